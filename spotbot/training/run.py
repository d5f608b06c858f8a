"""Training orchestration shared by `spotbot train`, the container's `train` and the cloud path.

One registry of trainable bots (TRAINERS): each checks its data (clear errors naming file and
line, per-label counts, an imbalance warning), dispatches to the bot's training function, and
returns the manifest of the model directory it wrote. `run_training` adds what every model
directory records the same way (the `training` block of bot.json) and `register` puts the result
into the local registry as the newest version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spotbot.core.artifacts import ModelManifest, ModelRegistry
from spotbot.core.errors import ModelError, UsageError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# Imbalance is reported when the smallest class has fewer than this share of the largest one.
IMBALANCE_RATIO = 5
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


@dataclass(slots=True)
class TrainRequest:
    """What to train: the same fields whether they come from flags or hyperparameters.json."""

    bot: str
    data: Path
    out: Path
    validation: Path | None = None
    base: str | None = None  # sentiment-zh: registry version or model folder; car-model: backbone
    epochs: int | None = None
    time_limit: float | None = None
    version: str | None = None
    seed: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    # Where an interruptible fit keeps its state (car-model: AutoGluon's folder), so a rerun
    # with the same data and settings continues it; None trains in out as before.
    work_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class DataReport:
    """Per-label counts of the training data, its fingerprint, and what looks wrong with it."""

    counts: dict[str, int]
    validation_counts: dict[str, int] | None
    fingerprint: str
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        total = sum(self.counts.values())
        out = [
            f"{total} training examples: "
            + ", ".join(f"{label} {n}" for label, n in sorted(self.counts.items()))
        ]
        if self.validation_counts is not None:
            out.append(f"{sum(self.validation_counts.values())} validation examples (given)")
        return out + [f"warning: {w}" for w in self.warnings]


def label_report(
    counts: Mapping[str, int], validation: Mapping[str, int] | None, fingerprint: str
) -> DataReport:
    warnings = []
    if counts and min(counts.values()) * IMBALANCE_RATIO < max(counts.values()):
        small = min(counts, key=lambda k: counts[k])
        large = max(counts, key=lambda k: counts[k])
        warnings.append(
            f"class imbalance: {small!r} has {counts[small]} examples, {large!r} has"
            f" {counts[large]} (under 1/{IMBALANCE_RATIO}); the model may rarely predict {small!r}"
        )
    if validation is not None:
        missing = sorted(set(counts) - set(validation))
        if missing:
            warnings.append(f"validation data has no examples of: {', '.join(missing)}")
    return DataReport(
        dict(counts), None if validation is None else dict(validation), fingerprint, tuple(warnings)
    )


class Trainer(Protocol):
    bot: str

    def check(self, request: TrainRequest) -> DataReport: ...

    def train(self, request: TrainRequest, registry: ModelRegistry | None) -> ModelManifest: ...


class CarModelTrainer:
    """car-model: AutoGluon MultiModalPredictor through spotbot.training.car_model.fine_tune_car_model."""

    bot = "car-model"

    def check(self, request: TrainRequest) -> DataReport:
        from spotbot.training.car_model import data_fingerprint, read_labelled_images

        items = read_labelled_images(request.data)
        held = read_labelled_images(request.validation) if request.validation else None
        return label_report(
            Counter(i.label for i in items),
            None if held is None else Counter(i.label for i in held),
            "sha256:" + data_fingerprint(items + (held or [])),
        )

    def train(self, request: TrainRequest, registry: ModelRegistry | None) -> ModelManifest:
        from spotbot.training.car_model import fine_tune_car_model

        params = dict(request.hyperparameters)
        if request.epochs:
            params["optim.max_epochs"] = request.epochs
        manifest = fine_tune_car_model(
            request.data,
            request.out,
            int(request.time_limit or 600),
            backbone=request.base,
            version=request.version,
            holdout_fraction=0.0 if request.validation else 0.2,
            hyperparameters=params,
            seed=request.seed,
            work_dir=request.work_dir,
        )
        if request.validation:
            manifest.metrics.update(self._evaluate(request.out, request.validation, manifest))
        return manifest

    @staticmethod
    def _evaluate(model_dir: Path, validation: Path, manifest: ModelManifest) -> dict[str, Any]:
        """Accuracy on the given validation set (fine_tune_car_model only scores its own split)."""
        import pandas as pd

        import spotbot.bots.torchcompat  # noqa: F401  (before autogluon: see its docstring)

        # isort: split
        from autogluon.multimodal import MultiModalPredictor

        from spotbot.bots.car_model import IMAGE_COLUMN
        from spotbot.training.car_model import read_labelled_images

        items = read_labelled_images(validation)
        predictor = MultiModalPredictor.load(str(model_dir / manifest.extra["predictor"]))
        predicted = predictor.predict(
            pd.DataFrame({IMAGE_COLUMN: [str(i.path) for i in items]}), as_pandas=False
        )
        correct = sum(str(p) == i.label for p, i in zip(predicted, items, strict=True))
        return {"heldout_accuracy": round(correct / len(items), 4), "heldout_images": len(items)}


class SentimentTrainer:
    """sentiment-zh: from the newest registered model, else from the shipped e5 model
    (spotbot.training.sentiment_zh.train_e5_model); a registered transformers model folder
    trains with train_sentiment."""

    bot = "sentiment-zh"

    def _records(self, request: TrainRequest) -> tuple[list[Any], list[Any], bool]:
        from spotbot.training.data import read_labelled, read_labelled_dir, split_records

        def read(path: Path) -> list[Any]:
            return read_labelled_dir(path) if path.is_dir() else read_labelled(path)

        if not request.data.exists():
            raise UsageError(f"{request.data}: no such file or folder")
        records = read(request.data)
        if request.validation:
            return records, read(request.validation), True
        train, held = split_records(records)
        return train, held, False

    def check(self, request: TrainRequest) -> DataReport:
        from spotbot.training.data import fingerprint

        train, held, given = self._records(request)
        return label_report(
            Counter(r.label for r in train),
            Counter(r.label for r in held) if given else None,
            fingerprint([*train, *held]),
        )

    def train(self, request: TrainRequest, registry: ModelRegistry | None) -> ModelManifest:
        from spotbot.bots.sentiment_zh import E5_FILE
        from spotbot.training.sentiment_zh import E5Hyper, Hyper, train_e5_model, train_sentiment

        train, held, _ = self._records(request)
        base = self.base_dir(request.base, registry)
        e5_known = set(E5Hyper.__dataclass_fields__)
        scratch_only = set(Hyper.__dataclass_fields__) - e5_known
        from_scratch = base is None and bool(scratch_only & set(request.hyperparameters))
        if (base is not None and (base / E5_FILE).is_file()) or (base is None and not from_scratch):
            # the default: the shipped e5 model (or a registered e5 fine-tune) trained further;
            # a compact BERT from scratch only when its architecture (hidden, layers...) is given
            unknown = sorted(set(request.hyperparameters) - e5_known)
            if unknown:
                raise UsageError(
                    f"unknown sentiment-zh hyperparameters: {', '.join(unknown)}"
                    f" (known: {', '.join(sorted(e5_known))})"
                )
            return train_e5_model(
                train,
                request.out,
                base_file=None if base is None else base / E5_FILE,
                version=request.version,
                eval_records=held or None,
                hyper=E5Hyper(**request.hyperparameters),
                epochs=request.epochs,
                seed=request.seed,
                time_limit=request.time_limit,
                progress=request.progress,
            )
        known = set(Hyper.__dataclass_fields__)
        unknown = sorted(set(request.hyperparameters) - known)
        if unknown:
            raise UsageError(
                f"unknown sentiment-zh hyperparameters: {', '.join(unknown)}"
                f" (known: {', '.join(sorted(known))})"
            )
        hyper = Hyper(**request.hyperparameters)
        return train_sentiment(
            train,
            request.out,
            base=base,
            epochs=request.epochs,
            seed=request.seed,
            time_limit=request.time_limit,
            progress=request.progress,
            version=request.version,
            eval_records=held or None,
            hyper=hyper,
            checkpoint_dir=request.work_dir,
        )

    def base_dir(self, base: str | None, registry: ModelRegistry | None) -> Path | None:
        """A model folder, a registry version, or (None) the newest registered model if any."""
        if base and Path(base).is_dir():
            return Path(base)
        if base:
            if registry is None:
                raise UsageError(
                    f"--base {base}: no such model folder (and no registry to look in)"
                )
            registry.get(self.bot, base)
            return registry.path(self.bot, base)
        versions = registry.versions(self.bot) if registry else []
        if versions:
            log.info("fine-tuning from the newest registered model %s", versions[0].version)
            return registry.path(self.bot, versions[0].version) if registry else None
        return None


OCR_ZH_BLOCKER = (
    "ocr-zh cannot be fine-tuned by spotbot yet. The PP-OCR recognizer trains with PaddleOCR's"
    " tools/train.py on paddlepaddle: paddlepaddle installs from PyPI (CPU, Python 3.11), but the"
    " paddleocr 3.x wheel is inference only (no tools/, no training configs); PaddleX's trainer"
    " git-clones the PaddleOCR repository and downloads the .pdparams training weights, and the"
    " bot ships only the ONNX export that rapidocr runs. Converting that ONNX graph to torch"
    " (onnx2torch), training with a CTC loss and exporting back is not implemented. To use your"
    " own recognizer: fine-tune in a PaddleOCR checkout (rec format: a label file of"
    " `path<TAB>text` lines), export to ONNX (paddle2onnx), and import a model folder whose"
    ' bot.json names its files ("files": {"det": ..., "rec": ..., "keys": ...}) with'
    " `spotbot models import`."
)


class OcrZhTrainer:
    """ocr-zh: not trainable here; the check says exactly why (see OCR_ZH_BLOCKER)."""

    bot = "ocr-zh"

    def check(self, request: TrainRequest) -> DataReport:
        raise UsageError(OCR_ZH_BLOCKER)

    def train(self, request: TrainRequest, registry: ModelRegistry | None) -> ModelManifest:
        raise UsageError(OCR_ZH_BLOCKER)


TRAINERS: dict[str, Trainer] = {
    t.bot: t for t in (CarModelTrainer(), SentimentTrainer(), OcrZhTrainer())
}


def trainer_for(bot: str) -> Trainer:
    try:
        return TRAINERS[bot]
    except KeyError:
        raise UsageError(
            f"bot {bot!r} cannot be trained; trainable bots: {', '.join(sorted(TRAINERS))}"
        ) from None


def check_data(request: TrainRequest) -> DataReport:
    """Validate the data before anything slow starts; UsageError names the file and line."""
    if not request.data.exists():
        raise UsageError(f"{request.data}: no such file or folder")
    if request.validation and not request.validation.exists():
        raise UsageError(f"{request.validation}: no such file or folder")
    return trainer_for(request.bot).check(request)


def run_training(
    request: TrainRequest, registry: ModelRegistry | None = None, report: DataReport | None = None
) -> ModelManifest:
    """Train into request.out (new or empty) and add the common `training` block to bot.json."""
    trainer = trainer_for(request.bot)
    report = report or check_data(request)
    for line in report.lines():
        log.info("%s", line)
    if request.out.exists() and any(request.out.iterdir()):
        raise UsageError(f"{request.out}: the output folder must be new or empty")
    started = time.monotonic()
    manifest = trainer.train(request, registry)
    manifest.extra["training"] = {
        "data_fingerprint": report.fingerprint,
        "label_counts": report.counts,
        "validation": "given" if request.validation else "split from the data",
        "base": request.base,
        "epochs": request.epochs,
        "time_limit": request.time_limit,
        "hyperparameters": request.hyperparameters,
        "seconds": round(time.monotonic() - started, 1),
        "warnings": list(report.warnings),
        "resumed_from_checkpoint": bool(
            manifest.extra.get("resumed_from_checkpoint")
            or manifest.extra.get("resumed_after_epoch")
        ),
    }
    manifest.extra.setdefault("data_fingerprint", report.fingerprint)
    manifest.extra.setdefault("training_seconds", manifest.extra["training"]["seconds"])
    manifest.write(request.out)
    return manifest


def register(model_dir: Path, registry: ModelRegistry) -> ModelManifest:
    """Import the model into the registry; its creation time makes it the newest version."""
    return registry.import_model(model_dir)


def parse_value(value: Any) -> Any:
    """A hyperparameter as SageMaker passes it (always a string) back to int/float/bool/JSON."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text[:1] in '[{"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value


def finished_model(folder: Path, bot: str, fingerprint: str) -> ModelManifest | None:
    """The manifest of a finished model for this bot and data in `folder`, else None."""
    try:
        manifest = ModelManifest.read(folder)
    except ModelError:  # an unreadable leftover means: train again
        return None
    done = manifest.extra.get("training", {})
    if manifest.bot != bot or done.get("data_fingerprint") != fingerprint:
        return None
    return manifest


def copy_model(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, dirs_exist_ok=True)


def request_digest(request: TrainRequest) -> str:
    """Short digest of what shapes the result beyond the data (used to name checkpoints)."""
    spec = json.dumps(
        [request.bot, request.base, request.epochs, request.hyperparameters, request.seed],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:12]
