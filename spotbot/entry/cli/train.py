"""`spotbot train`: fine-tune a bot locally or as a SageMaker training job."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from spotbot.aws.training_jobs import CloudTrainingOptions, train_in_cloud
from spotbot.core.errors import UsageError
from spotbot.entry.cli.common import (
    emit_json,
    guarded,
    home_option,
    json_option,
    main,
    open_home,
)
from spotbot.training.run import TrainRequest, check_data, parse_value, run_training, trainer_for


# -- train --------------------------------------------------------------------------------------
def _hyperparameters(pairs: tuple[str, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--hyperparameter {pair!r}: expected KEY=VALUE")
        parsed[key.strip()] = parse_value(value)
    return parsed


class _TrainDisplay:
    """A progress bar on a terminal (steps when the trainer reports them, else elapsed time)."""

    def __init__(self, description: str, enabled: bool):
        self.description, self.enabled, self._bar, self._task = description, enabled, None, None

    def __enter__(self) -> _TrainDisplay:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            bar: Any = Bar(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar = bar
            self._task = bar.add_task(self.description, total=None)
            bar.start()
        return self

    def update(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@main.command()
@click.option("--bot", required=True, help="car-model, sentiment-zh (ocr-zh: see the error).")
@click.option(
    "--data",
    required=True,
    help="Labelled data: a folder or .csv/.jsonl file (with --cloud also s3://bucket/prefix).",
)
@click.option("--validation", default=None, help="Validation data [default: split from --data].")
@click.option(
    "--base",
    default=None,
    help="sentiment-zh: a registry version or model folder"
    " [default: the newest registered model]; car-model: a backbone name.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop training after SECONDS (car-model default: 600).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the model here only (not registered unless --register).",
)
@click.option("--register", is_flag=True, help="With --out: also import it into the registry.")
@click.option("--version", "model_version", default=None, help="The model version to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "-H",
    "--hyperparameter",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A trainer setting (car-model: AutoGluon dotted keys; sentiment-zh: Hyper).",
)
@click.option("--cloud", is_flag=True, help="Train as a SageMaker managed Spot training job.")
@click.option("--instance-type", default="ml.m5.xlarge", show_default=True)
@click.option(
    "--max-run",
    type=click.IntRange(min=60),
    default=3600,
    show_default=True,
    help="Cloud: MaxRuntimeInSeconds.",
)
@click.option(
    "--max-wait",
    type=click.IntRange(min=60),
    default=None,
    help="Cloud: MaxWaitTimeInSeconds (Spot wait + run) [default: 2 x --max-run].",
)
@click.option("--image", default=None, help="Cloud: the bot image URI [env SPOTBOT_IMAGE_URIS].")
@click.option(
    "--role", default=None, help="Cloud: the training role ARN [env SPOTBOT_TRAINING_ROLE_ARN]."
)
@click.option(
    "--bucket", default=None, help="Cloud: artifacts bucket [env SPOTBOT_ARTIFACTS_BUCKET]."
)
@home_option
@json_option
@guarded
def train(
    bot: str,
    data: str,
    validation: str | None,
    base: str | None,
    epochs: int | None,
    time_limit: float | None,
    out: str | None,
    register: bool,
    model_version: str | None,
    seed: int,
    pairs: tuple[str, ...],
    cloud: bool,
    instance_type: str,
    max_run: int,
    max_wait: int | None,
    image: str | None,
    role: str | None,
    bucket: str | None,
    home: str | None,
    as_json: bool,
) -> None:
    """Fine-tune a bot on labelled data and register the model as the newest version."""
    import tempfile

    trainer_for(bot)
    hyper = _hyperparameters(pairs)
    if cloud:
        options = CloudTrainingOptions(
            bot=bot,
            data=data,
            validation=validation,
            base=base,
            epochs=epochs,
            time_limit=time_limit,
            version=model_version,
            seed=seed,
            hyperparameters=hyper,
            instance_type=instance_type,
            max_run=max_run,
            max_wait=max_wait or 2 * max_run,
            image=image,
            role=role,
            bucket=bucket,
        )
        manifest = train_in_cloud(options, echo=lambda line: click.echo(line, err=True))
    else:
        registry = open_home(home).registry()
        staging = Path(tempfile.mkdtemp(prefix="train-", dir=registry._staging()))
        request = TrainRequest(
            bot=bot,
            data=Path(data),
            out=Path(out) if out else staging / "model",
            validation=Path(validation) if validation else None,
            base=base,
            epochs=epochs,
            time_limit=time_limit,
            version=model_version,
            seed=seed,
            hyperparameters=hyper,
        )
        report = check_data(request)
        for line in report.lines():
            click.echo(line, err=True)
        try:
            with _TrainDisplay(f"training {bot}", sys.stderr.isatty() and not as_json) as bar:
                request.progress = bar.update
                manifest = run_training(request, registry, report)
            if not out or register:
                registry.import_model(request.out)
                click.echo(
                    f"registered {manifest.bot} {manifest.version} in {registry.root}"
                    " (the newest version: the next job uses it)",
                    err=True,
                )
        finally:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    if as_json:
        emit_json(manifest.to_dict())
    else:
        click.echo(
            f"trained {manifest.bot} {manifest.version}:"
            f" {json.dumps(manifest.metrics, ensure_ascii=False)}"
        )
