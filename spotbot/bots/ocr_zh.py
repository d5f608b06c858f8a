"""The ocr-zh bot: Chinese scene-text recognition with PP-OCR detection + recognition on ONNX Runtime."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from spotbot.bots.imaging import decode_image
from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import ModelError

log = logging.getLogger(__name__)


def _rapidocr_version() -> str:
    try:
        return version("rapidocr")
    except PackageNotFoundError:
        return "missing"


# Settings chosen for scene text (see the README's quality section for how they were measured):
# - the 180-degree orientation classifier is off: on short mixed lines ("出口EXIT") it flipped
#   correct crops and turned them into garbage, and upside-down scene text is rare;
# - the detector limits the LONGER side (limit_type "max"), so large photos are scaled down to
#   a size the detector was trained at and small images are never blown up, which costs time
#   and adds no detail.
DETECTOR_MAX_SIDE = 960
TEXT_SCORE = 0.5


class OcrZhBot(Bot):
    name = "ocr-zh"
    description = "Chinese scene-text recognition (PP-OCR detection + recognition, ONNX Runtime)"
    media = "image"
    extensions: ClassVar[frozenset[str]] = frozenset(
        {"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"}
    )
    batch_size = 4
    # PDF pages, multi-page TIFF scans and video frames: read page by page, frame by frame.
    containers: ClassVar[frozenset[str]] = frozenset({"pdf", "tiff", "video"})
    # Pages are rendered with a 1600-px long side (an A4 page at ~190 dpi: body text stays
    # legible to the recognizer, which reads its crops at full resolution, while the detector
    # scales the page down to DETECTOR_MAX_SIDE as it does any photo).
    part_side = 1600
    builtin_version = f"ppocr-v6-small-rapidocr{_rapidocr_version()}"
    builtin_origin = "the PP-OCRv6 small det+rec models bundled in the rapidocr wheel"

    def _load(self, model: ModelRef, threads: int) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise ModelError("ocr-zh needs the OCR extra: pip install 'spotbot[ocr]'") from exc
        params: dict[str, Any] = {
            "Global.use_cls": False,
            "Global.text_score": TEXT_SCORE,
            "Global.log_level": "warning",
            "Det.limit_type": "max",
            "Det.limit_side_len": DETECTOR_MAX_SIDE,
            "EngineConfig.onnxruntime.intra_op_num_threads": max(1, threads),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        if model.path is not None:
            assert self.manifest is not None
            files = self.manifest.extra.get("files", {})
            try:
                params["Det.model_path"] = str(model.path / files["det"])
                params["Rec.model_path"] = str(model.path / files["rec"])
                if files.get("keys"):
                    params["Rec.rec_keys_path"] = str(model.path / files["keys"])
            except (KeyError, TypeError):
                raise ModelError(
                    f"{model.path}/bot.json: ocr-zh models name their files as"
                    ' "files": {"det": ..., "rec": ..., "keys": ...}'
                ) from None
            for key in ("Det.model_path", "Rec.model_path"):
                if not (model.path / files[key.split(".")[0].lower()]).is_file():
                    raise ModelError(f"{model.path}: missing model file {params[key]}")
        try:
            self._engine = RapidOCR(params=params)
            # Load both networks now: a broken model must fail at load, not on the first asset.
            self._engine._load_det_model()
            self._engine._load_rec_model()
        except Exception as exc:  # onnxruntime raises its own types for bad model files
            raise ModelError(f"cannot load the OCR models: {exc}") from exc

    def decode(self, data: bytes, key: str) -> Image.Image:
        return decode_image(data, "RGB")

    def predict(self, items: Sequence[Image.Image]) -> list[Prediction]:
        return [self._read_one(image) for image in items]

    def _read_one(self, image: Image.Image) -> Prediction:
        # RapidOCR expects OpenCV's BGR order for arrays.
        output: Any = self._engine(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))
        boxes = getattr(output, "boxes", None)
        if boxes is None or len(boxes) == 0 or output.txts is None or output.scores is None:
            return {"tags": [], "text": ""}
        lines = [
            {
                "label": str(text),
                "score": round(float(min(max(score, 0.0), 1.0)), 4),
                "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
            }
            for box, text, score in zip(boxes, output.txts, output.scores, strict=True)
            if str(text).strip()
        ]
        ordered = reading_order(lines)
        return {
            "tags": sorted(ordered, key=lambda t: -t["score"]),
            "text": "\n".join(line["label"] for line in ordered),
        }


def reading_order(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lines top to bottom, and left to right within a row (boxes whose centres share a band)."""
    if not lines:
        return []

    def centre(line: dict[str, Any]) -> tuple[float, float, float]:
        ys = [p[1] for p in line["box"]]
        xs = [p[0] for p in line["box"]]
        return (sum(ys) / 4, min(xs), max(ys) - min(ys))

    items = sorted(lines, key=lambda line: centre(line)[0])
    rows: list[list[dict[str, Any]]] = []
    for line in items:
        cy, _, height = centre(line)
        if rows:
            ry, _, rh = centre(rows[-1][0])
            if abs(cy - ry) < 0.5 * max(min(height, rh), 1.0):
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda line: centre(line)[1])]
