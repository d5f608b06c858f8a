"""The bot catalog of a deployment: installed bots plus custom bots registered through the API.

A custom bot (bring your own bot: an image in the SageMaker contract and a model) is a JSON
document ``s3://<artifacts>/bots/<name>.json``: S3 rather than the search index because it is
configuration, read by name, versioned by the bucket, and the API's role may write only that
prefix. A registered bot becomes a :class:`Bot` class whose `accepts` uses its extensions, so
scan and init treat it like a built-in; its tagging runs in its own image, never in a Lambda:
the document names the Batch job definition registered for it (spotbot/aws/job_definitions.py),
which runs the image's ``command`` with the worker environment of spotbot.core.envnames.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from spotbot.aws.clients import LazyClient, aws_errors, error_code
from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import BotNotFoundError, ModelError, UnknownBotError, UsageError
from spotbot.core.plugins import available_bots, load_bot_class
from spotbot.core.records import utcnow

BOTS_PREFIX = "bots/"
BOT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(slots=True)
class CustomBotSpec:
    name: str
    image_uri: str
    model_uri: str  # s3://... a model directory (with bot.json) or model.tar.gz
    extensions: list[str]
    model_version: str = "registered"
    description: str = ""
    media: str = "file"
    command: list[str] = field(default_factory=lambda: ["work"])
    vcpus: int = 2
    memory_mib: int = 4096
    job_definition_arn: str | None = None  # what InitJob hands the workers' Batch arrays
    registered_at: str = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomBotSpec:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "media": self.media,
            "accepts": sorted(self.extensions),
            "custom": True,
            "image_uri": self.image_uri,
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "command": list(self.command),
            "vcpus": self.vcpus,
            "memory_mib": self.memory_mib,
            "job_definition_arn": self.job_definition_arn,
            "registered_at": self.registered_at,
        }


def custom_bot_class(spec: CustomBotSpec) -> type[Bot]:
    """A Bot class for a registered bot: what it accepts and its model, for scan and init."""

    class CustomBot(Bot):
        name = spec.name
        description = spec.description
        media = spec.media
        extensions: ClassVar[frozenset[str]] = frozenset(e.lower() for e in spec.extensions)
        builtin_version = None
        custom = spec

        def _load(self, model: ModelRef, threads: int) -> None:
            raise ModelError(f"bot {spec.name!r} runs in its own image ({spec.image_uri})")

        def decode(self, data: bytes, key: str) -> Any:
            raise ModelError(f"bot {spec.name!r} runs in its own image")

        def predict(self, items: Any) -> list[Prediction]:
            raise ModelError(f"bot {spec.name!r} runs in its own image")

    CustomBot.__name__ = CustomBot.__qualname__ = f"CustomBot[{spec.name}]"
    return CustomBot


class BotCatalog:
    """Installed bots and the custom bots registered under ``bots/`` in the artifacts bucket."""

    client = LazyClient("s3")

    def __init__(self, bucket: str | None, client: Any = None, prefix: str = BOTS_PREFIX):
        self.bucket = bucket
        self.prefix = prefix
        self._client = client

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}.json"

    def custom(self, name: str) -> CustomBotSpec | None:
        from botocore.exceptions import ClientError

        if not self.bucket or not BOT_NAME.match(name):
            return None
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NoSuchBucket"):
                return None
            raise
        return CustomBotSpec.from_dict(json.loads(body))

    def list_custom(self) -> list[CustomBotSpec]:
        if not self.bucket:
            return []
        specs = []
        with aws_errors("list registered bots"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self.prefix) :].removesuffix(".json")
                    spec = self.custom(name)
                    if spec is not None:
                        specs.append(spec)
        return specs

    def check_custom_name(self, name: str, verb: str = "replaced") -> None:
        """UsageError unless `name` may be a custom bot: a built-in's would shadow the real bot."""
        if not BOT_NAME.match(name):
            raise UsageError(f"invalid bot name {name!r}: lower-case letters, digits, '-'")
        if name in available_bots():
            raise UsageError(f"{name!r} is a built-in bot and cannot be {verb}")
        if not self.bucket:
            raise UsageError("this deployment has no artifacts bucket to register bots in")

    def register(self, spec: CustomBotSpec) -> CustomBotSpec:
        """Store a custom bot; a built-in's name is refused (it would shadow the real bot)."""
        self.check_custom_name(spec.name)
        body = json.dumps(spec.to_dict(), ensure_ascii=False, indent=2).encode()
        with aws_errors(f"register bot {spec.name}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(spec.name),
                Body=body,
                ContentType="application/json",
            )
        return spec

    def remove(self, name: str) -> None:
        """Delete a custom bot's document (deleting one that is gone is not an error)."""
        self.check_custom_name(name, verb="removed")
        with aws_errors(f"remove bot {name}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def bot_class(self, name: str) -> type[Bot]:
        """The Bot class of an installed or registered bot, else UnknownBotError."""
        if name in available_bots():
            return load_bot_class(name)
        spec = self.custom(name)
        if spec is None:
            known = ", ".join(sorted({*available_bots(), *(s.name for s in self.list_custom())}))
            raise UnknownBotError(f"unknown bot {name!r} (known: {known or 'none'})")
        return custom_bot_class(spec)

    def describe(self, name: str) -> dict[str, Any]:
        if name in available_bots():
            cls = load_bot_class(name)
            return {
                "name": cls.name,
                "description": cls.description,
                "media": cls.media,
                "accepts": sorted(cls.extensions),
                "custom": False,
                "builtin_version": cls.builtin_version,
            }
        spec = self.custom(name)
        if spec is None:
            raise BotNotFoundError(f"no bot named {name!r}")
        return spec.describe()

    def describe_all(self) -> list[dict[str, Any]]:
        found = {name: self.describe(name) for name in available_bots()}
        for spec in self.list_custom():
            found.setdefault(spec.name, spec.describe())
        return [found[name] for name in sorted(found)]


class CatalogResolver:
    """Model resolution for every bot: the S3 registry first, then a custom bot's registered model."""

    def __init__(self, registry: Any):
        self.registry = registry

    def resolve(self, bot: type[Bot], pin: str | None = None) -> ModelRef:
        spec: CustomBotSpec | None = getattr(bot, "custom", None)
        if spec is not None and (not pin or pin == spec.model_version):
            if not pin and self.registry.versions(bot.name):
                return self.registry.resolve(bot, None)  # type: ignore[no-any-return]
            return ModelRef(bot.name, spec.model_version, None, spec.model_uri)
        return self.registry.resolve(bot, pin)  # type: ignore[no-any-return]
