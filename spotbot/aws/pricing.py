"""Live EC2 prices: Spot from DescribeSpotPriceHistory, on-demand from the Pricing API.

Either may be refused (no credentials, no permission, no network): the caller then keeps the
price it had (stack config, else the dated table), and the estimate names the source it used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from spotbot.core.cost import InstancePrice, PriceBook

log = logging.getLogger(__name__)

#: The Pricing API's location names, for the regions spotbot is most run in.
PRICING_LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
}


def spot_prices(ec2: Any, instance_types: Iterable[str]) -> dict[str, float]:
    """The latest Linux Spot price of each type: the median over the region's zones."""
    types = sorted(set(instance_types))
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    paginator = ec2.get_paginator("describe_spot_price_history")
    pages = paginator.paginate(
        InstanceTypes=types,
        ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
        StartTime=datetime.now(UTC),
    )
    for page in pages:
        for row in page.get("SpotPriceHistory", []):
            key = (row["InstanceType"], row.get("AvailabilityZone", ""))
            stamp = row.get("Timestamp") or datetime.min.replace(tzinfo=UTC)
            if isinstance(stamp, str):
                stamp = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00")
            if key not in latest or stamp > latest[key][0]:
                latest[key] = (stamp, float(row["SpotPrice"]))
    by_type: dict[str, list[float]] = {}
    for (itype, _), (_, price) in latest.items():
        by_type.setdefault(itype, []).append(price)
    return {t: sorted(p)[len(p) // 2] for t, p in by_type.items()}


def instance_vcpus(ec2: Any, instance_types: Iterable[str]) -> dict[str, int]:
    response = ec2.describe_instance_types(InstanceTypes=sorted(set(instance_types)))
    return {
        row["InstanceType"]: int(row["VCpuInfo"]["DefaultVCpus"])
        for row in response.get("InstanceTypes", [])
    }


def on_demand_price(pricing: Any, instance_type: str, region: str) -> float | None:
    """The Linux, shared-tenancy on-demand hourly price from the Pricing API (None: not found)."""
    location = PRICING_LOCATIONS.get(region)
    if location is None:
        return None
    filters = {
        "instanceType": instance_type,
        "location": location,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    response = pricing.get_products(
        ServiceCode="AmazonEC2",
        Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
        MaxResults=1,
    )
    for item in response.get("PriceList", []):
        product = json.loads(item) if isinstance(item, str) else item
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if usd is not None:
                    return float(usd)
    return None


def live_prices(
    book: PriceBook, instance_types: Iterable[str], region: str, ec2: Any, pricing: Any = None
) -> PriceBook:
    """`book` with the types' prices read from AWS where it answers; kept where it does not."""
    from botocore.exceptions import BotoCoreError, ClientError

    types = sorted(set(instance_types))
    try:
        spot = spot_prices(ec2, types)
        vcpus = instance_vcpus(ec2, types)
    except (ClientError, BotoCoreError) as exc:
        log.info("no live Spot prices (%s): using %s", exc, book.source)
        return book
    found = []
    for itype in types:
        known = book.instances.get(itype)
        on_demand = known.on_demand_hourly if known else None
        if pricing is not None:
            try:
                on_demand = on_demand_price(pricing, itype, region) or on_demand
            except (ClientError, BotoCoreError) as exc:
                log.info("no on-demand price from the Pricing API (%s)", exc)
        cpus = vcpus.get(itype) or (known.vcpus if known else None)
        if on_demand is None or cpus is None or itype not in spot:
            continue
        found.append(
            InstancePrice(
                instance_type=itype,
                vcpus=cpus,
                on_demand_hourly=on_demand,
                spot_hourly=spot[itype],
                source=f"DescribeSpotPriceHistory {region}",
            )
        )
    if not found:
        return book
    return book.with_instances(found, f"AWS {region} (live) + {book.source}")
