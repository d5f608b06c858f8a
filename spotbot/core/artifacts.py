"""Model artifacts, the local model registry (models/<bot>/<version>/ with a bot.json manifest),
and the one rule that chooses a job's model: pinned, else the newest, else the bot's built-in."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spotbot.core.errors import ModelError, UsageError
from spotbot.core.records import utcnow

MANIFEST = "bot.json"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass(slots=True)
class ModelManifest:
    """What a model directory says about itself."""

    bot: str
    version: str
    framework: str
    labels: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=utcnow)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "bot.json") -> ModelManifest:
        missing = [k for k in ("bot", "version", "framework") if not data.get(k)]
        if missing:
            raise ModelError(f"{where}: missing {', '.join(missing)}")
        version = str(data["version"])
        if not _VERSION.match(version):
            raise ModelError(f"{where}: invalid version {version!r} (letters, digits, . _ + -)")
        labels = data.get("labels", [])
        if not isinstance(labels, list):
            raise ModelError(f"{where}: labels must be a list")
        known = {"bot", "version", "framework", "labels", "metrics", "created"}
        return cls(
            bot=str(data["bot"]),
            version=version,
            framework=str(data["framework"]),
            labels=[str(x) for x in labels],
            metrics=dict(data.get("metrics") or {}),
            created=str(data.get("created") or ""),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        path = Path(model_dir) / MANIFEST
        if not path.is_file():
            raise ModelError(f"{model_dir}: not a model directory (no {MANIFEST})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: unreadable manifest ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{path}: the manifest must be a JSON object")
        return cls.from_dict(data, str(path))

    def write(self, model_dir: Path) -> None:
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(model_dir) / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        tmp.replace(Path(model_dir) / MANIFEST)


@dataclass(slots=True, frozen=True)
class ModelRef:
    """The model a job uses: a version, and the directory holding it (None: the bot's built-in)."""

    bot: str
    version: str
    path: Path | None
    origin: str  # where the model comes from, in words


class BotModels(Protocol):
    """What model choice needs to know of a bot (a Bot class satisfies it)."""

    name: str
    builtin_version: str | None
    builtin_origin: str


class VersionedModels(Protocol):
    """A registry of model versions: the local folder here, the S3 prefix in spotbot.aws."""

    def versions(self, bot: str) -> list[ModelManifest]: ...

    def get(self, bot: str, version: str) -> ModelManifest: ...

    def ref(self, bot: str, version: str) -> ModelRef: ...

    def no_model_message(self, bot: str) -> str: ...


def choose_model(bot: BotModels, registry: VersionedModels, pin: str | None = None) -> ModelRef:
    """The model a job of this bot uses: the pinned version, else the registry's newest, else
    the bot's built-in one. Every registry resolves through this rule, locally and in the cloud."""
    if pin:
        if bot.builtin_version and pin == bot.builtin_version:
            return ModelRef(bot.name, pin, None, bot.builtin_origin)
        manifest = registry.get(bot.name, pin)
        return registry.ref(bot.name, manifest.version)
    versions = registry.versions(bot.name)
    if versions:
        return registry.ref(bot.name, versions[0].version)
    if bot.builtin_version:
        return ModelRef(bot.name, bot.builtin_version, None, bot.builtin_origin)
    raise UsageError(registry.no_model_message(bot.name))


def resolve_model(bot: BotModels, registry: ModelRegistry, pin: str | None = None) -> ModelRef:
    """The model a local job uses: `pin` may also be a model folder (holding bot.json)."""
    if pin:
        path = Path(pin).expanduser()
        if path.is_dir():
            manifest = ModelManifest.read(path)
            if manifest.bot != bot.name:
                raise ModelError(f"{path}: the model is for bot {manifest.bot!r}, not {bot.name!r}")
            return ModelRef(bot.name, manifest.version, path.absolute(), f"folder {path}")
    return choose_model(bot, registry, pin)


class ModelRegistry:
    """Versions of each bot's model under one root folder (the same layout as the S3 prefix)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def versions(self, bot: str) -> list[ModelManifest]:
        """Valid versions of the bot's model, newest first (by creation time, then version)."""
        folder = self.root / bot
        found = []
        if folder.is_dir():
            for child in folder.iterdir():
                if child.is_dir() and not child.name.startswith("."):
                    try:
                        manifest = ModelManifest.read(child)
                    except ModelError:
                        continue  # half-imported or corrupt: never picked as newest
                    if manifest.bot == bot and manifest.version == child.name:
                        found.append(manifest)
        return sorted(found, key=lambda m: (m.created, m.version), reverse=True)

    def path(self, bot: str, version: str) -> Path:
        return self.root / bot / version

    def get(self, bot: str, version: str) -> ModelManifest:
        if not _VERSION.match(version):
            raise UsageError(f"invalid model version {version!r}")
        path = self.path(bot, version)
        if not path.is_dir():
            raise UsageError(f"no model version {version!r} for bot {bot!r} in {self.root}")
        manifest = ModelManifest.read(path)
        if manifest.bot != bot:
            raise ModelError(f"{path}: the manifest is for bot {manifest.bot!r}, not {bot!r}")
        return manifest

    def import_model(self, source: str | Path, replace: bool = False) -> ModelManifest:
        """Copy a model directory (or a model.tar.gz of one) into the registry, atomically."""
        source = Path(source)
        with tempfile.TemporaryDirectory(dir=self._staging()) as tmp:
            if source.is_file() and source.name.endswith((".tar.gz", ".tgz")):
                staged = Path(tmp) / "model"
                _safe_extract(source, staged)
            elif source.is_dir():
                staged = Path(tmp) / "model"
                shutil.copytree(source, staged, symlinks=False)
            else:
                raise UsageError(f"not a model directory or model.tar.gz: {source}")
            manifest = ModelManifest.read(staged)
            target = self.path(manifest.bot, manifest.version)
            if target.exists():
                if not replace:
                    raise UsageError(
                        f"model {manifest.bot} {manifest.version} is already in the registry"
                    )
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(target)
        return manifest

    def ref(self, bot: str, version: str) -> ModelRef:
        return ModelRef(bot, version, self.path(bot, version), f"registry {self.root}")

    def no_model_message(self, bot: str) -> str:
        return f"bot {bot!r} has no model: import one with `spotbot models import PATH`"

    def resolve(self, bot: BotModels, pin: str | None = None) -> ModelRef:
        """The model a job of `bot` (a Bot class) uses; see resolve_model."""
        return resolve_model(bot, self, pin)

    def remove(self, bot: str, version: str) -> None:
        self.get(bot, version)
        shutil.rmtree(self.path(bot, version))

    def _staging(self) -> Path:
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging


def extract_model_archive(archive: Path, target: Path, where: str | None = None) -> None:
    """Unpack a model.tar.gz into `target`, refusing members that would land outside it or
    are links, devices or FIFOs (tarfile's "data" filter where Python has it, 3.11.4+)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, filter="data")
            else:  # the same rules, checked by hand
                root = Path(target).resolve()
                for member in tar.getmembers():
                    dest = (root / member.name).resolve()
                    if not (member.isfile() or member.isdir()) or (
                        dest != root and root not in dest.parents
                    ):
                        raise tarfile.TarError(f"unsafe member {member.name!r}")
                tar.extractall(target)
    except (tarfile.TarError, OSError) as exc:
        raise ModelError(f"{where or archive}: not a readable model.tar.gz ({exc})") from None


def _safe_extract(archive: Path, target: Path) -> None:
    extract_model_archive(archive, target)
    entries = [p for p in target.iterdir()]
    # model.tar.gz made from a folder holds that folder; SageMaker's holds the files directly.
    if len(entries) == 1 and entries[0].is_dir() and not (target / MANIFEST).exists():
        inner = entries[0]
        for child in inner.iterdir():
            child.replace(target / child.name)
        inner.rmdir()
