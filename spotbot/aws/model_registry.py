"""The model registry under an S3 prefix: s3://bucket/models/<bot>/<version>/ with bot.json, as locally."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from spotbot.aws.clients import LazyClient
from spotbot.core.artifacts import MANIFEST, BotModels, ModelManifest, ModelRef, choose_model
from spotbot.core.errors import ModelError, UsageError


class S3ModelRegistry:
    """Versions of each bot's model in S3. A version is visible once its bot.json exists, and
    bot.json is uploaded last, so a half-uploaded model is never picked."""

    client = LazyClient("s3")

    def __init__(self, bucket: str, prefix: str = "models/", client: Any = None):
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._client = client

    def uri(self, bot: str, version: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{bot}/" + (f"{version}/" if version else "")

    def _manifest(self, bot: str, version: str) -> ModelManifest | None:
        from botocore.exceptions import ClientError

        key = f"{self.prefix}{bot}/{version}/{MANIFEST}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            manifest = ModelManifest.from_dict(json.loads(body), f"s3://{self.bucket}/{key}")
        except (json.JSONDecodeError, ModelError):
            return None
        return manifest if manifest.bot == bot and manifest.version == version else None

    def versions(self, bot: str) -> list[ModelManifest]:
        """Valid versions, newest first (creation time, then version), as ModelRegistry."""
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{bot}/", Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                version = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                manifest = self._manifest(bot, version)
                if manifest is not None:
                    found.append(manifest)
        return sorted(found, key=lambda m: (m.created, m.version), reverse=True)

    def get(self, bot: str, version: str) -> ModelManifest:
        manifest = self._manifest(bot, version)
        if manifest is None:
            raise UsageError(f"no model version {version!r} for bot {bot!r} in {self.uri(bot)}")
        return manifest

    def ref(self, bot: str, version: str) -> ModelRef:
        """A version's reference; its path is None until a worker downloads it."""
        return ModelRef(bot, version, None, self.uri(bot, version))

    def no_model_message(self, bot: str) -> str:
        return f"bot {bot!r} has no model in {self.uri(bot)}"

    def resolve(self, bot: BotModels, pin: str | None = None) -> ModelRef:
        """Pinned version, else the newest, else the bot's built-in (path None: not downloaded)."""
        return choose_model(bot, self, pin)

    def download(self, bot: str, version: str, dest: Path) -> Path:
        """Copy a version into `dest` (created), manifest checked; returns dest."""
        self.get(bot, version)
        dest.mkdir(parents=True, exist_ok=True)
        base = f"{self.prefix}{bot}/{version}/"
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(base) :]
                if not rel or rel.endswith("/") or ".." in rel.split("/"):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, obj["Key"], str(target))
        return dest

    def upload(self, model_dir: Path, replace: bool = False) -> ModelManifest:
        """Upload a model folder; bot.json goes last so readers never see half a model."""
        manifest = ModelManifest.read(model_dir)
        if not replace and self._manifest(manifest.bot, manifest.version) is not None:
            raise UsageError(
                f"model {manifest.bot} {manifest.version} is already in {self.uri(manifest.bot)}"
            )
        base = f"{self.prefix}{manifest.bot}/{manifest.version}/"
        files = sorted(p for p in Path(model_dir).rglob("*") if p.is_file() and p.name != MANIFEST)
        for path in files:
            self.client.upload_file(
                str(path), self.bucket, base + path.relative_to(model_dir).as_posix()
            )
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(manifest.to_dict(), fh, ensure_ascii=False)
        self.client.upload_file(fh.name, self.bucket, base + MANIFEST)
        Path(fh.name).unlink()
        return manifest
