"""A cloud job's dry run: what `POST /jobs` with `"dry_run": true` answers instead of starting.

Prices come from AWS (DescribeSpotPriceHistory, the Pricing API) where the role may read
them, else from the stack's config (SPOTBOT_INSTANCE_PRICES), else from the dated table; the
answer names which.
"""

from __future__ import annotations

import json
import os
from typing import Any

from spotbot.aws.catalog import BotCatalog
from spotbot.aws.locations import open_cloud_source
from spotbot.aws.pricing import live_prices
from spotbot.aws.settings import CloudSettings, ConfigError
from spotbot.core.cost import (
    PriceBook,
    default_calibration,
    default_prices,
    estimate_job,
    instance_prices_from_config,
)
from spotbot.core.envnames import INSTANCE_PRICES, MAX_VCPUS
from spotbot.core.steps import ESTIMATE_PAGES, sample_source


def stack_prices(book: PriceBook, environ: dict[str, str] | None = None) -> PriceBook:
    """The table with the stack config's instance prices (SPOTBOT_INSTANCE_PRICES) over it."""
    env = os.environ if environ is None else environ
    text = env.get(INSTANCE_PRICES)
    if not text:
        return book
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{INSTANCE_PRICES} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{INSTANCE_PRICES} must be a JSON object of instance types")
    return book.with_instances(instance_prices_from_config(data, "stack config"), "stack config")


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
