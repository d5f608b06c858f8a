"""A cloud job's dry run: what `POST /jobs` with `"dry_run": true` answers instead of starting.

Prices come from AWS (DescribeSpotPriceHistory, the Pricing API) where the role may read
them, else from the stack's config (SPOTBOT_INSTANCE_PRICES), else from the dated table; the
answer names which.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from typing import Any

from spotbot.aws.catalog import BotCatalog
from spotbot.aws.locations import open_cloud_source
from spotbot.aws.pricing import live_prices
from spotbot.aws.settings import CloudSettings, ConfigError
from spotbot.core.cost import (
    PRICES_FILE,
    PriceBook,
    default_calibration,
    default_prices,
    estimate_job,
    instance_prices_from_config,
)
from spotbot.core.envnames import INSTANCE_PRICES, MAX_VCPUS
from spotbot.core.steps import ESTIMATE_PAGES, sample_source


def _size_vcpus(instance_type: str) -> int:
    """vCPUs of an EC2 size by its name (large 2, xlarge 4, 8xlarge 32...): where none is given."""
    size = instance_type.rsplit(".", 1)[-1]
    if size.endswith("xlarge"):
        factor = size.removesuffix("xlarge")
        return 4 * (int(factor) if factor.isdigit() else 1)
    return {"nano": 1, "micro": 1, "small": 1, "medium": 1, "large": 2}.get(size, 1)


def stack_price_table(environ: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The stack config's price table (SPOTBOT_INSTANCE_PRICES, from ``spotbot:instancePrices``):
    {instance type: {"spot"?, "on_demand", "vcpus"?}} in USD per hour; {} when none is set."""
    env = os.environ if environ is None else environ
    text = env.get(INSTANCE_PRICES)
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{INSTANCE_PRICES} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{INSTANCE_PRICES} must map instance types to {{spot, on_demand}}")
    return data


def stack_prices(book: PriceBook, environ: dict[str, str] | None = None) -> PriceBook:
    """The table with the stack config's instance prices (SPOTBOT_INSTANCE_PRICES) over it.
    SageMaker types (``ml.*``) price endpoints, not Batch instances: they are left out here."""
    table = stack_price_table(environ)
    rows = {}
    for name, row in table.items():
        if name.startswith("ml."):
            continue
        known = book.instances.get(name)
        vcpus = row.get("vcpus") or (known.vcpus if known else _size_vcpus(name))
        rows[name] = {**row, "vcpus": vcpus}
    if not rows:
        return book
    return book.with_instances(instance_prices_from_config(rows, "stack config"), "stack config")


def endpoint_hour_usd(instance_type: str, environ: dict[str, str] | None = None) -> float | None:
    """What an hour of a SageMaker endpoint instance costs: the stack's price table, else the
    dated hosting table shipped with spotbot; None when neither knows the type."""
    row = stack_price_table(environ).get(instance_type)
    if row is not None and row.get("on_demand") is not None:
        return float(row["on_demand"])
    shipped = json.loads(
        resources.files("spotbot.core").joinpath("data", PRICES_FILE).read_text("utf-8")
    )
    found = (shipped.get("endpoints") or {}).get(instance_type)
    return float(found["on_demand"]) if found else None


#: The instance type whose Spot price per vCPU prices a cloud job's spend (Batch picks the
#: exact types from the stack's families; this is the common one).
SPEND_REFERENCE = "c6i.xlarge"


def spot_vcpu_hour_usd() -> float:
    """A vCPU-hour on Spot: the reference type's price (stack config, else the dated table)."""
    price = stack_prices(default_prices()).instance(SPEND_REFERENCE)
    hourly = price.spot_hourly if price.spot_hourly is not None else price.on_demand_hourly
    return round(hourly / price.vcpus, 6)


def estimate_request(
    settings: CloudSettings,
    catalog: BotCatalog,
    request: dict[str, Any],
    s3: Any = None,
    ec2: Any = None,
    pricing: Any = None,
    max_pages: int = ESTIMATE_PAGES,
) -> dict[str, Any]:
    """The estimate of a job request: its source sampled, priced per instance type."""
    bot_cls = catalog.bot_class(str(request["bot"]))
    settings.check_bucket_allowed(str(request["source"]), "source")
    settings.check_bucket_allowed(str(request["output"]), "output")
    calibration = default_calibration()
    types = list(request.get("instance_types") or calibration.instance_types(bot_cls.name))
    book = stack_prices(default_prices())
    if ec2 is not None:
        book = live_prices(book, types, settings.region or book.region, ec2, pricing)
    source = open_cloud_source(str(request["source"]), settings, s3)
    sample = sample_source(source, bot_cls, max_pages)
    max_vcpus = int(os.environ.get(MAX_VCPUS) or 256)
    est = estimate_job(
        bot_cls.name,
        sample,
        calibration,
        book,
        types,
        max_vcpus=max_vcpus,
        per_asset_objects=bool(request.get("per_asset_results")),
    )
    return {"dry_run": True, **est.to_dict()}
