"""Stack configuration: every ``spotbot:*`` key, its default and the rules across keys.

The model is plain pydantic, tested without Pulumi; :func:`from_pulumi` reads the stack's
config through Pulumi (imported there, so the model itself needs no engine). Keys are the
camelCase names used in ``Pulumi.<stack>.yaml`` and documented in ``Pulumi.yaml``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

BUILTIN_BOTS = ("ocr-zh", "car-model", "sentiment-zh")
#: The bots this repository builds images for (infra/images.py), and their build arguments.
IMAGE_BUILD_ARGS = Path(__file__).resolve().parent.parent / "images" / "bots.json"
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
_BOT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_IMAGE_BY_DIGEST = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?(/[a-z0-9][a-z0-9._-]*)+$")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class BotResources(_Model):
    """What one worker container of a bot asks Batch for."""

    vcpus: int = Field(2, ge=1, le=64)
    memory_mib: int = Field(4096, ge=512)
    gpus: int = Field(0, ge=0, le=8)


DEFAULT_BOT_RESOURCES = {
    "ocr-zh": BotResources(vcpus=2, memory_mib=4096),
    "car-model": BotResources(vcpus=4, memory_mib=8192),
    "sentiment-zh": BotResources(vcpus=2, memory_mib=4096),
}


_INSTANCE_TYPE = re.compile(r"^(ml\.)?[a-z][a-z0-9-]*\.[a-z0-9]+$")


class InstancePriceSetting(_Model):
    """One row of the stack's price table (``spotbot:instancePrices``), USD per hour."""

    on_demand: float = Field(gt=0, le=1000)
    spot: float | None = Field(None, gt=0, le=1000)
    vcpus: int | None = Field(None, ge=1, le=1024)

    def to_env(self) -> dict[str, float | int]:
        """As SPOTBOT_INSTANCE_PRICES carries it (spotbot.cloud.estimate.stack_price_table)."""
        row: dict[str, float | int] = {"on_demand": self.on_demand}
        if self.spot is not None:
            row["spot"] = self.spot
        if self.vcpus is not None:
            row["vcpus"] = self.vcpus
        return row


class SearchSettings(_Model):
    instance_type: str = "t3.small.search"
    instance_count: int = Field(1, ge=1, le=20)
    volume_gib: int = Field(10, ge=10, le=16384)
    engine_version: str = "OpenSearch_2.19"
    dedicated_master: bool = False

    @model_validator(mode="after")
    def _zones(self) -> SearchSettings:
        if self.dedicated_master and self.instance_count < 2:
            raise ValueError("search.dedicatedMaster needs search.instanceCount >= 2")
        if not self.instance_type.endswith(".search"):
            raise ValueError("search.instanceType is an OpenSearch type, e.g. t3.small.search")
        return self


class SpotbotSettings(_Model):
    """Every ``spotbot:*`` key. With nothing set, a small working deployment comes out."""

    name_prefix: str = Field("spotbot", pattern=r"^[a-z][a-z0-9-]{1,20}$")
    bots: tuple[str, ...] = BUILTIN_BOTS
    bot_resources: dict[str, BotResources] = Field(default_factory=dict)
    image_digests: dict[str, str] = Field(default_factory=dict)
    images: dict[str, str] = Field(default_factory=dict)
    image_tag: str = "0.1.0"
    allowed_buckets: tuple[str, ...] = ()
    custom_bot_repositories: tuple[str, ...] = ()
    kms_key_arn: str | None = None
    # compute
    max_vcpus: int = Field(256, ge=1, le=100_000)
    instance_types: tuple[str, ...] = ("c6i", "c7i", "m6i", "m7i", "c6a", "m6a", "r6i")
    allocation_strategy: Literal["SPOT_PRICE_CAPACITY_OPTIMIZED", "SPOT_CAPACITY_OPTIMIZED"] = (
        "SPOT_PRICE_CAPACITY_OPTIMIZED"
    )
    on_demand_fallback: bool = False
    on_demand_max_vcpus: int = Field(0, ge=0)
    job_attempts: int = Field(3, ge=1, le=10)
    job_timeout_hours: int = Field(24, ge=1, le=336)
    # network
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    # inference and search
    inference_default: Literal["in-container", "endpoint"] = "in-container"
    endpoint_instance_type: str = "ml.m5.large"
    instance_prices: dict[str, InstancePriceSetting] = Field(default_factory=dict)
    search: SearchSettings = Field(default_factory=SearchSettings)
    # functions, api, logs
    powertools_layer_arn: str | None = None
    powertools_layer_version: int = Field(27, ge=1)
    log_retention_days: int = 30
    api_rate_limit: float = Field(20.0, gt=0)
    api_burst_limit: int = Field(40, ge=1)
    notify_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    endpoint_poll_seconds: int = Field(30, ge=1, le=3600)
    max_concurrent_arrays: int = Field(4, ge=1, le=40)

    @field_validator("bots")
    @classmethod
    def _bots(cls, bots: tuple[str, ...]) -> tuple[str, ...]:
        if not bots:
            raise ValueError("bots: deploy at least one bot")
        if len(set(bots)) != len(bots):
            raise ValueError("bots: a bot is listed twice")
        bad = [b for b in bots if not _BOT_NAME.match(b)]
        if bad:
            raise ValueError(f"bots: invalid names {bad} (lowercase letters, digits, -)")
        return bots

    @field_validator("custom_bot_repositories")
    @classmethod
    def _repositories(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [n for n in names if not _REPOSITORY.match(n)]
        if bad:
            raise ValueError(
                f"customBotRepositories takes repositories (host/name), no tag or digest: {bad}"
            )
        return names

    @field_validator("instance_prices")
    @classmethod
    def _prices(cls, prices: dict[str, InstancePriceSetting]) -> dict[str, InstancePriceSetting]:
        bad = [t for t in prices if not _INSTANCE_TYPE.match(t)]
        if bad:
            raise ValueError(f"instancePrices: not instance types: {bad} (e.g. c6i.xlarge)")
        return prices

    def instance_prices_env(self) -> str:
        """The price table as the functions' SPOTBOT_INSTANCE_PRICES (JSON)."""
        return json.dumps({t: p.to_env() for t, p in sorted(self.instance_prices.items())})

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise ValueError(f"logRetentionDays must be one of {LOG_RETENTION_DAYS}")
        return days

    @field_validator("image_tag")
    @classmethod
    def _tag(cls, tag: str) -> str:
        if tag == "latest" or not _TAG.match(tag):
            raise ValueError("imageTag must be an explicit version tag, never 'latest'")
        return tag

    @field_validator("allowed_buckets")
    @classmethod
    def _buckets(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [n for n in names if "*" in n or "/" in n or n.startswith("arn:")]
        if bad:
            raise ValueError(f"allowedBuckets takes bucket names, not patterns or ARNs: {bad}")
        return names

    @model_validator(mode="after")
    def _across(self) -> SpotbotSettings:
        unknown = (set(self.image_digests) | set(self.images) | set(self.bot_resources)) - set(
            self.bots
        )
        if unknown:
            raise ValueError(f"imageDigests/images/botResources name bots not deployed: {unknown}")
        buildable = set(json.loads(IMAGE_BUILD_ARGS.read_text(encoding="utf-8")))
        imageless = [
            b for b in self.bots if b not in buildable | set(self.images) | set(self.image_digests)
        ]
        if imageless:
            raise ValueError(
                f"no image for {imageless}: add the bot's build arguments to images/bots.json,"
                " or name a pushed image in images / imageDigests"
            )
        for bot, digest in self.image_digests.items():
            if not _DIGEST.match(digest):
                raise ValueError(f"imageDigests.{bot} must look like sha256:<64 hex>")
        for bot, image in self.images.items():
            if not _IMAGE_BY_DIGEST.match(image):
                raise ValueError(f"images.{bot} must be referenced by digest (repo@sha256:...)")
        if self.subnet_ids and not self.vpc_id:
            raise ValueError("subnetIds needs vpcId")
        if self.vpc_id and not self.subnet_ids:
            raise ValueError("vpcId needs subnetIds (the subnets Batch instances run in)")
        if self.on_demand_fallback and self.on_demand_max_vcpus < 1:
            raise ValueError("onDemandFallback needs onDemandMaxVcpus >= 1")
        if not self.on_demand_fallback and self.on_demand_max_vcpus:
            raise ValueError("onDemandMaxVcpus is set but onDemandFallback is false")
        largest = max(self.resources_of(b).vcpus for b in self.bots)
        if self.max_vcpus < largest:
            raise ValueError(f"maxVcpus {self.max_vcpus} is below one worker's vCPUs ({largest})")
        if self.api_burst_limit < self.api_rate_limit:
            raise ValueError("apiBurstLimit must be at least apiRateLimit")
        return self

    def resources_of(self, bot: str) -> BotResources:
        return self.bot_resources.get(bot) or DEFAULT_BOT_RESOURCES.get(bot) or BotResources()

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SpotbotSettings:
        """From config values as Pulumi hands them (strings holding JSON for lists and maps)."""
        parsed = {}
        for key, value in values.items():
            name = key.split(":", 1)[1] if key.startswith("spotbot:") else key
            parsed[name] = _maybe_json(value)
        return cls.model_validate(parsed)


def _maybe_json(value: Any) -> Any:
    """Pulumi gives structured values as JSON text; scalars pydantic converts itself."""
    if isinstance(value, str) and value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def from_pulumi() -> SpotbotSettings:
    """The settings of the current stack (``spotbot:*`` keys)."""
    import pulumi

    config = pulumi.Config("spotbot")
    values = {}
    for field_name, info in SpotbotSettings.model_fields.items():
        key = info.alias or field_name
        raw = config.get(key)
        if raw is not None:
            values[key] = raw
    return SpotbotSettings.from_mapping(values)
