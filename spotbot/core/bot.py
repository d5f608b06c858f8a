"""The bot interface: what a bot accepts, how it loads a model, and how it tags a batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, ClassVar

from spotbot.core.artifacts import ModelManifest, ModelRef
from spotbot.core.errors import ModelError

# What predict returns per asset: {"tags": [{"label", "score", ...}, ...], **bot_specific_fields}
Prediction = dict[str, Any]


class Bot(ABC):
    """A named tagger. Subclass it and register the class under the `spotbot.bots` entry points.

    The worker calls `decode` once per asset (raise AssetError for a bad one: it fails only
    that asset) and `predict` once per batch of decoded assets.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    media: ClassVar[str] = "file"  # image, text...
    extensions: ClassVar[frozenset[str]] = frozenset()
    batch_size: ClassVar[int] = 8
    builtin_version: ClassVar[str | None] = None  # set when the bot works with no model dir
    builtin_origin: ClassVar[str] = ""

    def __init__(self) -> None:
        self.model: ModelRef | None = None
        self.manifest: ModelManifest | None = None

    @classmethod
    def accepts(cls, key: str) -> bool:
        """Whether an asset with this key is for this bot (by extension; content is checked later)."""
        suffix = PurePosixPath(key).suffix.lower().lstrip(".")
        return suffix in cls.extensions

    def load(self, model: ModelRef, threads: int = 1) -> None:
        """Load the model (a directory with bot.json, or the built-in when model.path is None)."""
        self.model = model
        if model.path is not None:
            self.manifest = self.check_manifest(ModelManifest.read(model.path))
        self._load(model, threads)

    def check_manifest(self, manifest: ModelManifest) -> ModelManifest:
        if manifest.bot != self.name:
            raise ModelError(
                f"the model {manifest.version} is for bot {manifest.bot!r}, not {self.name!r}"
            )
        return manifest

    @abstractmethod
    def _load(self, model: ModelRef, threads: int) -> None:
        """Bot-specific loading; raise ModelError for a corrupt or incompatible model."""

    @abstractmethod
    def decode(self, data: bytes, key: str) -> Any:
        """Turn an asset's bytes into the model's input, or raise AssetError saying why not."""

    @abstractmethod
    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        """Tag a batch of decoded inputs; one Prediction per input, in order."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "media": self.media,
            "accepts": sorted(self.extensions),
        }
