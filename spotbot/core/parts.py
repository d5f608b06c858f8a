"""Containers of many inputs, opened by the pipeline and streamed to bots part by part: the pages
of a PDF or a multi-page TIFF, the frames sampled from a video.

A bot declares the containers it takes (`Bot.containers`); the worker opens such an asset with
`open_parts` (spotbot.core.bot), which checks it at once (an encrypted, corrupt or truncated
file, or one over the page or duration cap, is a one-line AssetError that fails only its task),
then yields one part at a time: memory holds one rendered page or frame plus one batch, however long the document.
`tag_parts` feeds the parts to the bot in batches and `combine_parts` folds the per-part
predictions into the asset's one result: tags carry their page or timestamp.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from spotbot.core.errors import AssetError

PDF, TIFF, VIDEO = "pdf", "tiff", "video"
CONTAINER_EXTENSIONS: dict[str, frozenset[str]] = {
    PDF: frozenset({"pdf"}),
    TIFF: frozenset({"tif", "tiff"}),
    VIDEO: frozenset({"mp4", "mov", "mkv", "webm"}),
}

# Environment overrides of the limits below (a Batch job definition or a local shell sets them).
ENV_MAX_PAGES = "SPOTBOT_MAX_PAGES"
ENV_MAX_VIDEO_SECONDS = "SPOTBOT_MAX_VIDEO_SECONDS"
ENV_FRAME_EVERY = "SPOTBOT_FRAME_EVERY_SECONDS"

Prediction = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PartLimits:
    """Caps and sampling: pages per document, seconds per video, a frame every N seconds.

    Over a cap, the asset fails with a one-line error (it is not silently cut short)."""

    max_pages: int = 500
    max_video_seconds: float = 3600.0
    frame_every: float = 2.0
    # A frame is also taken when it differs this much from the last one taken (mean absolute
    # difference of 32x32 greyscale thumbnails, 0..1), no sooner than `min_scene_gap` after it.
    scene_threshold: float = 0.12
    min_scene_gap: float = 0.4
    max_pixels: int = 40_000_000  # per rendered page or frame, before scaling down

    @classmethod
    def from_env(cls) -> PartLimits:
        def number(name: str, default: float) -> float:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise AssetError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise AssetError(f"{name} must be positive, not {raw}")
            return value

        base = cls()
        return cls(
            max_pages=int(number(ENV_MAX_PAGES, base.max_pages)),
            max_video_seconds=number(ENV_MAX_VIDEO_SECONDS, base.max_video_seconds),
            frame_every=number(ENV_FRAME_EVERY, base.frame_every),
        )


@dataclass(frozen=True, slots=True)
class Part:
    """One page or frame: its image (rendered to the bot's side), its text layer, where it is."""

    index: int
    image: Image.Image | None = None
    text: str | None = None
    page: int | None = None  # 1-based, documents
    time: float | None = None  # seconds from the start, videos

    @property
    def where(self) -> dict[str, Any]:
        if self.page is not None:
            return {"page": self.page}
        return {"time": round(self.time or 0.0, 3)}


@dataclass
class PartStream:
    """An opened container: what it is, and its parts, decoded one at a time when iterated."""

    container: str
    key: str
    parts: Iterator[Part]
    info: dict[str, Any] = field(default_factory=dict)  # pages, duration, size...
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # part index -> image size
    # What tags the whole stream (the bot that opened it: Bot.tag_container), so the worker's
    # predict loop can hand a container to its bot next to a batch of plain inputs.
    tagger: Callable[[PartStream], Prediction] | None = None

    def tag(self) -> Prediction:
        if self.tagger is None:
            raise AssetError(f"{self.key}: no bot opened this {self.container}")
        return self.tagger(self)

    def __iter__(self) -> Iterator[Part]:
        for part in self.parts:
            if part.image is not None:
                self.sizes[part.index] = part.image.size
            yield part


def key_suffix(key: str) -> str:
    """A key's extension, lower case, without the dot ("" for none): what PurePosixPath's
    suffix gives, without building a path per asset."""
    return os.path.splitext(key.rpartition("/")[2])[1].lower().lstrip(".")


def container_of(key: str, containers: frozenset[str]) -> str | None:
    """Which of `containers` the key's extension names, if any."""
    if not containers:  # most bots take none: no path parsing per asset
        return None
    suffix = key_suffix(key)
    return next((c for c in sorted(containers) if suffix in CONTAINER_EXTENSIONS.get(c, ())), None)


def container_extensions(containers: frozenset[str]) -> frozenset[str]:
    return frozenset().union(*(CONTAINER_EXTENSIONS.get(c, frozenset()) for c in containers))


def fit(width: float, height: float, side: int) -> float:
    """The scale that brings the longest side to `side`."""
    return side / max(width, height, 1.0)


# -- tagging the parts -------------------------------------------------------------------------
def tag_parts(
    stream: PartStream,
    decode_part: Callable[[Part], Any],
    predict: Callable[[Sequence[Any]], Sequence[Prediction]],
    batch_size: int,
) -> list[tuple[Part, Prediction]]:
    """Each part's prediction, parts fed in batches as they are decoded (one batch in memory)."""
    tagged: list[tuple[Part, Prediction]] = []
    batch: list[tuple[Part, Any]] = []

    def flush() -> None:
        if not batch:
            return
        predictions = list(predict([item for _, item in batch]))
        if len(predictions) != len(batch):
            raise RuntimeError(f"bot returned {len(predictions)} predictions for {len(batch)}")
        # Keep where each part was (and its text), not its pixels: those go with the batch.
        tagged.extend(
            (_bare(part), pred) for (part, _), pred in zip(batch, predictions, strict=True)
        )
        batch.clear()

    for part in stream:
        item = decode_part(part)
        if item is None:
            continue
        batch.append((part, item))
        if len(batch) >= max(1, batch_size):
            flush()
    flush()
    return tagged


def _bare(part: Part) -> Part:
    return Part(part.index, text=part.text, page=part.page, time=part.time)


def combine_parts(stream: PartStream, tagged: list[tuple[Part, Prediction]]) -> Prediction:
    """The asset's result: every part's tags with its page or time, plus per-container summaries.

    Documents keep each page's text in reading order (`pages`, and `text` page after page);
    videos aggregate what was seen: distinct labels with first and last time and best score.
    """
    tags: list[dict[str, Any]] = []
    texts: list[tuple[Part, str]] = []
    for part, prediction in tagged:
        for tag in prediction.get("tags") or []:
            tags.append({**tag, **part.where})
        text = _text_of(part, prediction)
        if text.strip():
            texts.append((part, text))
    result: Prediction = {"tags": tags, "container": stream.container, **stream.info}
    if stream.container == VIDEO:
        result["tags"] = sorted(tags, key=lambda t: (t["time"], -float(t.get("score", 0))))
        result["frames"] = len(tagged)
        if 0 in stream.sizes:
            result["frame_size"] = list(stream.sizes[0])  # the pixels the tags' boxes are in
        result["seen"] = seen_labels(tags)
        if texts:
            lines = list(dict.fromkeys(line for _, t in texts for line in t.splitlines()))
            result["text"] = "\n".join(lines)
        return result
    sizes = stream.sizes
    result["pages"] = [
        {
            "page": part.page,
            **(
                {"width": sizes[part.index][0], "height": sizes[part.index][1]}
                if part.index in sizes
                else {}
            ),
            **({"text": _text_of(part, pred)} if _text_of(part, pred) else {}),
        }
        for part, pred in tagged
    ]
    if texts:
        result["text"] = "\n\n".join(text for _, text in texts)
    return result


def _text_of(part: Part, prediction: Prediction) -> str:
    """What a part says: the bot's reading of it (OCR), else the text layer the bot was given."""
    text = prediction.get("text")
    return text if isinstance(text, str) else (part.text or "")


def seen_labels(tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct labels over time: first and last time seen, best score, how many frames."""
    seen: dict[str, dict[str, Any]] = {}
    for tag in tags:
        label, when, score = (
            str(tag.get("label", "")),
            float(tag["time"]),
            float(tag.get("score", 0)),
        )
        entry = seen.setdefault(
            label, {"label": label, "first": when, "last": when, "score": score, "frames": 0}
        )
        entry["first"], entry["last"] = min(entry["first"], when), max(entry["last"], when)
        entry["score"] = max(entry["score"], score)
        entry["frames"] += 1
    return sorted(seen.values(), key=lambda e: (-e["score"], e["first"]))
