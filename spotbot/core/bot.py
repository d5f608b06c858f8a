"""The bot interface: what a bot accepts, how it loads a model, and how it tags a batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from spotbot.core.artifacts import ModelManifest, ModelRef
from spotbot.core.errors import AssetError, ModelError
from spotbot.core.parts import (
    PDF,
    TIFF,
    VIDEO,
    Part,
    PartLimits,
    PartStream,
    combine_parts,
    container_extensions,
    container_of,
    key_suffix,
    tag_parts,
)

# What predict returns per asset: {"tags": [{"label", "score", ...}, ...], **bot_specific_fields}
Prediction = dict[str, Any]


def open_parts(
    container: str,
    data: bytes,
    key: str,
    *,
    side: int = 1600,
    images: bool = True,
    texts: bool = False,
    limits: PartLimits | None = None,
) -> PartStream:
    """Open a container asset (checked now) whose parts are rendered lazily, longest side `side`."""
    limits = limits or PartLimits.from_env()
    if not data:
        raise AssetError("empty file (0 bytes)")
    # Imported here: their libraries (numpy, the PDF and video decoders) are loaded by the
    # processes that open containers, not by every process that imports a bot.
    if container == PDF:
        from spotbot.core.documents import open_pdf

        return open_pdf(data, key, side, images, texts, limits)
    if container == TIFF:
        from spotbot.core.documents import open_tiff

        return open_tiff(data, key, side, limits)
    if container == VIDEO:
        from spotbot.core.video import open_video

        return open_video(data, key, side, limits)
    raise AssetError(f"unknown container {container!r}")


def first_part(container: str, data: bytes, key: str, side: int = 1600) -> Part | None:
    """The first page or frame of a container (for a report's thumbnail); the rest is not read."""
    stream = open_parts(container, data, key, side=side)
    parts = iter(stream)
    try:
        return next(parts, None)
    finally:
        close = getattr(stream.parts, "close", None)
        if close is not None:
            close()


class Bot(ABC):
    """A named tagger. Subclass it and register the class under the `spotbot.bots` entry points.

    The worker calls `decode` once per asset (raise AssetError for a bad one: it fails only
    that asset) and `predict` once per batch of decoded assets.

    Containers of many inputs come for free: a bot that lists "pdf", "tiff" or "video" in
    `containers` gets such assets opened by the pipeline (`open_container`) and streamed to
    `predict` as pages or frames (rendered with the longest side `part_side`, or as the PDF's
    text layer when `part_input` is "text"); `combine_parts` makes the asset's one result, each
    tag carrying its page or timestamp. Override `decode_part` or `combine_parts` to change
    what a part becomes or how parts add up.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    media: ClassVar[str] = "file"  # image, text...
    extensions: ClassVar[frozenset[str]] = frozenset()
    batch_size: ClassVar[int] = 8
    builtin_version: ClassVar[str | None] = None  # set when the bot works with no model dir
    builtin_origin: ClassVar[str] = ""
    containers: ClassVar[frozenset[str]] = frozenset()  # "pdf", "tiff", "video"
    part_input: ClassVar[str] = "image"  # what a part gives predict: "image" or "text"
    part_side: ClassVar[int] = 1600  # longest side of a rendered page or sampled frame

    def __init__(self) -> None:
        self.model: ModelRef | None = None
        self.manifest: ModelManifest | None = None

    @classmethod
    def accepts(cls, key: str) -> bool:
        """Whether an asset with this key is for this bot (by extension; content is checked later)."""
        suffix = key_suffix(key)
        return suffix in cls.extensions or suffix in container_extensions(cls.containers)

    def open_container(self, data: bytes, key: str) -> PartStream | None:
        """The asset's parts when it is a container this bot takes (checked now, read lazily);
        None for a plain asset, which goes to `decode`."""
        container = container_of(key, self.containers)
        if container is None:
            return None
        stream = open_parts(
            container,
            data,
            key,
            side=self.part_side,
            images=self.part_input == "image",
            texts=self.part_input == "text",
        )
        stream.tagger = self.tag_container
        return stream

    def decode_part(self, part: Part) -> Any:
        """A page's or frame's model input; None skips it (a page without a text layer)."""
        if self.part_input == "text":
            return part.text or None
        return part.image

    def tag_container(self, stream: PartStream) -> Prediction:
        """Tag every part of an opened container, a batch at a time, into one Prediction."""
        return self.combine_parts(
            stream, tag_parts(stream, self.decode_part, self.predict, self.batch_size)
        )

    def combine_parts(
        self, stream: PartStream, tagged: list[tuple[Part, Prediction]]
    ) -> Prediction:
        """The asset's result from its parts' predictions (see spotbot.core.parts)."""
        return combine_parts(stream, tagged)

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
            "accepts": sorted(self.extensions | container_extensions(self.containers)),
        }
