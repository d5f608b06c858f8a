"""The SageMaker training contract for every trainable bot: /opt/ml in, a model directory out.

Reads:   input/config/hyperparameters.json (SageMaker passes every value as a string),
         input/data/train (required), input/data/validation and input/data/base (optional:
         a model folder to fine-tune, sentiment-zh), checkpoints/ (when the job has a
         CheckpointConfig: SageMaker syncs it with S3 and restores it after a Spot interruption).
Writes:  model/ (the model directory with bot.json, which SageMaker tars into model.tar.gz),
         output/failure (the reason, shown as the job's FailureReason) and a non-zero exit.

What resumes, when checkpoints/ exists (<digest>: request_digest of bot, base, epochs, seed and
hyperparameters; the time limit is not part of it):
- a finished model, any bot: kept in checkpoints/model-<digest>/ (its data fingerprint is
  checked too), so a job interrupted after training, or restarted on the same data and settings,
  copies it to model/ instead of training again;
- car-model, mid-fit: AutoGluon trains in checkpoints/fit-<digest>/predictor/ with a marker
  (checkpoints/fit-<digest>/spotbot-fit.json: data fingerprint + settings digest). A restarted
  job with the same data and settings finds Lightning's last.ckpt there and continues the fit
  from it (weights, optimizer and scheduler state, epoch and step, and the time already spent:
  time_limit bounds the whole fit across attempts); bot.json then records
  training.resumed_from_checkpoint = true. Progress since the last checkpoint is lost
  (AutoGluon writes last.ckpt at each validation check). Other data or settings clear the folder
  and start over. The folder is removed once the finished model is in model-<digest>/.
- sentiment-zh, mid-fit: train_sentiment saves its state (weights, optimizer, schedule, epoch)
  after every epoch in checkpoints/fit-<digest>/; a restarted job with the same data and
  settings continues after the last finished epoch (bot.json: resumed_after_epoch). Progress
  within the interrupted epoch is lost.
The base directory is SPOTBOT_OPT_ML (default /opt/ml), so tests run this as a plain process.
"""

from __future__ import annotations

import json
import logging
import shutil
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spotbot.core import envnames
from spotbot.core.errors import SpotbotError, UsageError
from spotbot.core.opt_ml import opt_ml, write_failure
from spotbot.training.run import (
    DATA_SUFFIXES,
    TrainRequest,
    check_data,
    copy_model,
    finished_model,
    parse_value,
    request_digest,
    run_training,
)

log = logging.getLogger(__name__)

# Hyperparameters the contract itself understands; every other key goes to the bot's trainer.
CONTRACT_KEYS = ("bot", "epochs", "time_limit", "version", "base", "seed")
RESUMABLE_FIT_BOTS = {"car-model", "sentiment-zh"}  # trainers that continue an interrupted fit


def read_hyperparameters(base: Path) -> dict[str, Any]:
    path = base / "input" / "config" / "hyperparameters.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: must be a JSON object")
    # SageMaker turns every value into a string; "time-limit" is accepted for "time_limit".
    return {str(k).replace("-", "_"): parse_value(v) for k, v in raw.items()}


def channel_data(folder: Path) -> Path:
    """A channel folder as the trainers read it: the folder, or its one manifest file."""
    if not folder.is_dir():
        raise UsageError(f"no training data: channel folder {folder} does not exist")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in DATA_SUFFIXES]
    # car-model manifests are one file beside (or with) their images; a sentiment channel of
    # several files is read whole as a folder by its trainer.
    if len(files) == 1 and not any(p.is_dir() for p in entries):
        return files[0]
    return folder


def build_request(base: Path, bot: str | None, hyper: dict[str, Any]) -> TrainRequest:
    hyper = dict(hyper)
    bot = str(hyper.pop("bot", None) or bot or "")
    if not bot:
        raise UsageError(
            f"no bot to train: set {envnames.BOT} in the image or the bot hyperparameter"
        )
    data = base / "input" / "data"
    validation = data / "validation"
    base_model = data / "base"
    picked = {k: hyper.pop(k) for k in CONTRACT_KEYS if k in hyper}
    return TrainRequest(
        bot=bot,
        data=channel_data(data / "train"),
        out=base / "model",
        validation=channel_data(validation) if validation.is_dir() else None,
        base=str(base_model)
        if base_model.is_dir()
        else (str(picked["base"]) if picked.get("base") else None),
        epochs=int(picked["epochs"]) if picked.get("epochs") else None,
        time_limit=float(picked["time_limit"]) if picked.get("time_limit") else None,
        version=str(picked["version"]) if picked.get("version") else None,
        seed=int(picked.get("seed") or 0),
        hyperparameters=hyper,
        progress=_log_progress(),
    )


def train_in_container(bot: str | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the contract; 0 with model/ written, else 1 with output/failure written."""
    base = opt_ml(env)
    try:
        request = build_request(base, bot, read_hyperparameters(base))
        report = check_data(request)
        _train_or_resume(request, base / "checkpoints", report)
    except SpotbotError as exc:
        log.error("training failed: %s", exc)
        write_failure(f"{type(exc).__name__}: {exc}", base)
        return 1
    except Exception as exc:  # the contract: every failure ends in output/failure
        log.error("training failed\n%s", traceback.format_exc())
        write_failure(f"training failed: {type(exc).__name__}: {exc}", base)
        return 1
    return 0


def _train_or_resume(request: TrainRequest, checkpoints: Path, report: Any) -> None:
    if not checkpoints.is_dir():
        manifest = run_training(request, report=report)
        log.info("trained %s %s: %s", manifest.bot, manifest.version, manifest.metrics)
        return
    done = checkpoints / f"model-{request_digest(request)}"
    reused = finished_model(done, request.bot, report.fingerprint)
    if reused is not None:
        manifest = reused
        log.info(
            "resuming: %s %s already trained in %s, not training again",
            manifest.bot,
            manifest.version,
            done,
        )
    else:
        partial = checkpoints / f".partial-{request_digest(request)}"
        shutil.rmtree(partial, ignore_errors=True)  # a half-written model cannot be continued
        fit = checkpoints / f"fit-{request_digest(request)}"
        # Trainers that can continue a fit keep its state in a work folder (see the docstring).
        work_dir = fit if request.bot in RESUMABLE_FIT_BOTS else None
        staged = TrainRequest(**{**_fields(request), "out": partial, "work_dir": work_dir})
        manifest = run_training(staged, report=report)
        shutil.rmtree(done, ignore_errors=True)
        partial.replace(done)  # the rename marks it finished (SageMaker uploads it to S3)
        # The fit's state is no longer needed; keeping it would double the S3 upload.
        shutil.rmtree(fit, ignore_errors=True)
        if manifest.extra.get("resumed_from_checkpoint"):
            log.info("resumed the interrupted fit from %s", fit)
        log.info("trained %s %s: %s", manifest.bot, manifest.version, manifest.metrics)
    copy_model(done, request.out)


def _fields(request: TrainRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in TrainRequest.__dataclass_fields__}


def _log_progress() -> Any:
    last = [-1]

    def update(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            log.info("training: step %d of %d", done, total)

    return update
