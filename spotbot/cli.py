"""The `spotbot` command line: tag, resume, status, jobs, search, bots, models and train."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from spotbot.errors import SpotbotError, UsageError
from spotbot.model import JobStatus
from spotbot.runner import (
    Home,
    JobFailedError,
    LocalRunner,
    Progress,
    RunOutcome,
    default_home,
    default_workers,
)

log = logging.getLogger("spotbot")

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _home(path: str | None) -> Home:
    return Home(Path(path).expanduser() if path else default_home())


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=None))


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


home_option = click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="Where the task store and models live [env SPOTBOT_HOME; default:"
    " the user's data folder].",
)
threads_option = click.option(
    "--threads", type=click.IntRange(min=0), default=0, help="Model threads [0: all cores]."
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object on stdout and nothing else there.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="spotbot")
def main(verbose: int) -> None:
    """Tag large collections of assets with machine-learning bots."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """Turn spotbot's own errors into one-line messages and exit codes (never a traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except JobFailedError as exc:
            _fail(f"job failed: {exc}", EXIT_JOB_FAILED)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
        except SpotbotError as exc:
            _fail(str(exc), EXIT_JOB_FAILED)

    return wrapper


# -- bots -------------------------------------------------------------------------------------
@main.command()
@home_option
@json_option
@guarded
def bots(home: str | None, as_json: bool) -> None:
    """The installed bots: what each accepts and which model it would use."""
    from spotbot.bots.registry import available_bots, load_bot_class, resolve_model

    registry = _home(home).registry()
    rows = []
    for name in sorted(available_bots()):
        row: dict[str, Any] = {"name": name}
        try:
            cls = load_bot_class(name)
            row.update(cls().describe())
            try:
                ref = resolve_model(cls, registry)
                row["model_version"], row["model_origin"] = ref.version, ref.origin
            except SpotbotError as exc:
                row["model_version"], row["model_origin"] = None, str(exc)
        except SpotbotError as exc:
            row["error"] = str(exc)
        rows.append(row)
    if as_json:
        _emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("bot", "accepts", "model", "from")
    for row in rows:
        table.add_row(
            row["name"],
            " ".join(row.get("accepts", [])),
            row.get("model_version") or "-",
            row.get("model_origin") or row.get("error", ""),
        )
    Console().print(table)


# -- tag / resume -------------------------------------------------------------------------------
class _Display:
    """A Rich progress bar on a terminal; otherwise a plain log line every few seconds."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._last_line = 0.0
        self._start = time.monotonic()

    def __enter__(self) -> _Display:
        if self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                transient=False,
                console=__import__("rich.console").console.Console(stderr=True),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("scanning", total=None, rate="", detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        c = progress.counts
        if progress.phase == "scan":
            text = f"scanned {progress.scanned:,} objects"
            if self._bar is not None:
                self._bar.update(self._task, description="scanning", detail=text)
            else:
                self._line(text)
            return
        total = c["total"] - c["skipped"]
        finished = c["done"] + c["failed"]
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = finished / elapsed
        detail = f"done {c['done']:,} failed {c['failed']:,} skipped {c['skipped']:,}"
        if self._bar is not None:
            self._bar.update(
                self._task,
                description="tagging",
                total=total,
                completed=finished,
                rate=f"{rate:.1f}/s",
                detail=detail,
            )
        else:
            eta = f"{(total - finished) / rate:.0f}s" if rate > 0 else "-"
            self._line(f"tagged {finished:,}/{total:,} ({detail}) {rate:.1f} assets/s ETA {eta}")

    def _line(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_line >= 5.0:
            self._last_line = now
            click.echo(text, err=True)


def _install_interrupt(runner: LocalRunner) -> None:
    def first(signum: int, frame: object) -> None:
        click.echo("\nstopping after the batches in flight (Ctrl-C again to abort)...", err=True)
        runner.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, first)
    signal.signal(signal.SIGTERM, lambda s, f: runner.stop())


def _finish(outcome: RunOutcome, as_json: bool, quiet_hint: bool = False) -> None:
    job = outcome.job
    if outcome.interrupted:
        click.echo(f"interrupted: resume with `spotbot resume {job.id}`", err=True)
        if as_json:
            _emit_json({"job_id": job.id, "status": str(job.status)})
        sys.exit(EXIT_INTERRUPTED)
    summary = outcome.summary
    if summary is None:  # the job had already finished before this run
        summary = {"job_id": job.id, "status": str(job.status), "error": job.error}
    counts = summary.get("counts", {})
    click.echo(
        f"job {job.id}: {summary['status']}"
        + (
            f" - done {counts.get('done', 0)}, failed {counts.get('failed', 0)},"
            f" skipped {counts.get('skipped', 0)}"
            if counts
            else ""
        ),
        err=True,
    )
    if summary.get("output"):
        click.echo(f"results: {summary['output']}/results.jsonl", err=True)
    if summary.get("error"):
        click.echo(f"error: {summary['error']}", err=True)
    if as_json:
        _emit_json(summary)
    sys.exit(EXIT_OK if job.status == JobStatus.SUCCEEDED else EXIT_JOB_FAILED)


@main.command()
@click.argument("source")
@click.option("--bot", required=True, help="Bot name (see `spotbot bots`) or package.module:Class.")
@click.option(
    "--out",
    "out",
    default="spotbot-out",
    show_default=True,
    help="Output folder or s3://bucket/prefix; results go to OUT/<job_id>/.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [default: number of cores].",
)
@click.option("--model", default=None, help="Model version in the registry, or a model folder.")
@click.option(
    "--max-failures",
    type=click.FloatRange(0, 100),
    default=100.0,
    show_default=True,
    help="Percent of failed assets above which the job fails.",
)
@click.option(
    "--max-asset-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    help="Assets larger than this fail without being read.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Assets per model call [default: the bot's].",
)
@click.option("--job-id", default=None, help="Use this job id (runs the job if it exists).")
@home_option
@json_option
@guarded
def tag(
    source: str,
    bot: str,
    out: str,
    workers: int | None,
    model: str | None,
    max_failures: float,
    max_asset_mb: float,
    batch_size: int | None,
    job_id: str | None,
    home: str | None,
    as_json: bool,
) -> None:
    """Tag every asset under SOURCE (a folder or s3://bucket/prefix) with a bot."""
    from spotbot.worker import WorkerConfig

    runner = _runner(
        home,
        workers,
        as_json,
        WorkerConfig(batch_size=batch_size, max_asset_bytes=int(max_asset_mb * 1024 * 1024)),
    )
    job = runner.create(
        bot=bot,
        source=source,
        output=out,
        model=model,
        max_failure_pct=max_failures,
        max_asset_bytes=int(max_asset_mb * 1024 * 1024),
        job_id=job_id,
    )
    click.echo(f"job {job.id}: {job.bot} (model {job.model_version}) over {job.source}", err=True)
    _run(runner, job.id, as_json)


@main.command()
@click.argument("job_id")
@click.option("--workers", type=click.IntRange(min=1), default=None)
@home_option
@json_option
@guarded
def resume(job_id: str, workers: int | None, home: str | None, as_json: bool) -> None:
    """Finish a job that was interrupted or killed."""
    runner = _runner(home, workers, as_json)
    with runner.home.store() as store:
        job = store.get_job(job_id)
    from spotbot.worker import WorkerConfig

    runner.config = WorkerConfig(
        max_asset_bytes=int(job.options.get("max_asset_bytes") or runner.config.max_asset_bytes)
    )
    click.echo(f"resuming job {job.id} ({job.status})", err=True)
    _run(runner, job.id, as_json)


def _runner(
    home: str | None, workers: int | None, as_json: bool, config: Any = None
) -> LocalRunner:
    return LocalRunner(_home(home).root, workers=workers or default_workers(), config=config)


def _run(runner: LocalRunner, job_id: str, as_json: bool) -> None:
    _install_interrupt(runner)
    with _Display(enabled=True) as display:
        runner.on_progress = display
        outcome = runner.run(job_id)
    _finish(outcome, as_json)


# -- jobs / status ----------------------------------------------------------------------------
@main.command()
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@home_option
@json_option
@guarded
def jobs(limit: int, home: str | None, as_json: bool) -> None:
    """Recent jobs, newest first."""
    with _home(home).store() as store:
        rows = [j.to_dict() for j in store.list_jobs(limit)]
    if as_json:
        _emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "bot", "status", "model", "source", "created")
    for row in rows:
        table.add_row(
            row["id"],
            row["bot"],
            row["status"],
            row["model_version"] or "-",
            row["source"],
            row["created_at"],
        )
    Console().print(table)


@main.command()
@click.argument("job_id")
@home_option
@json_option
@guarded
def status(job_id: str, home: str | None, as_json: bool) -> None:
    """A job's state and task counts."""
    from spotbot.pipeline import job_counts

    with _home(home).store() as store:
        job = store.get_job(job_id)
        data = job.to_dict() | {"counts": job_counts(store, job_id)}
    data.pop("options", None)
    data.pop("scan_token", None)
    if as_json:
        _emit_json(data)
        return
    c = data["counts"]
    click.echo(f"{job.id}  {job.status}  bot={job.bot} model={job.model_version}")
    click.echo(f"  source {job.source} -> {job.output}")
    click.echo(
        f"  total {c['total']}  done {c['done']}  failed {c['failed']}  skipped {c['skipped']}"
        f"  pending {c['pending']}  running {c['running']}"
    )
    if job.error:
        click.echo(f"  error: {job.error}")


# -- search -------------------------------------------------------------------------------------
@main.command()
@click.argument("query")
@click.option("--bot", default=None)
@click.option("--job", "job_id", default=None)
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True)
@home_option
@json_option
@guarded
def search(
    query: str, bot: str | None, job_id: str | None, limit: int, home: str | None, as_json: bool
) -> None:
    """Full-text search over tags and recognised text."""
    if not query.strip():
        raise UsageError("the search query is empty")
    with _home(home).store() as store:
        hits = store.search(query, bot=bot, job_id=job_id, limit=limit)
    if as_json:
        _emit_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no match", err=True)
    for hit in hits:
        what = hit.text.replace("\n", " / ") if hit.text else ", ".join(hit.labels[:5])
        click.echo(f"{hit.job_id}  {hit.key}  [{hit.bot}]  {what}")


# -- models -------------------------------------------------------------------------------------
@main.group()
def models() -> None:
    """The local model registry: versions of each bot's model."""


@models.command("list")
@click.option("--bot", default=None)
@home_option
@json_option
@guarded
def models_list(bot: str | None, home: str | None, as_json: bool) -> None:
    from spotbot.bots.registry import available_bots

    registry = _home(home).registry()
    names = [bot] if bot else sorted(available_bots())
    rows = [m.to_dict() for name in names for m in registry.versions(name)]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo(f"no models in {registry.root}", err=True)
    for row in rows:
        click.echo(
            f"{row['bot']}  {row['version']}  {row['framework']}  {row['created']}"
            f"  {json.dumps(row.get('metrics', {}), ensure_ascii=False)}"
        )


@models.command("show")
@click.argument("bot")
@click.argument("version")
@home_option
@guarded
def models_show(bot: str, version: str, home: str | None) -> None:
    manifest = _home(home).registry().get(bot, version)
    _emit_json(manifest.to_dict())


@models.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.option("--replace", is_flag=True, help="Replace a version already in the registry.")
@click.option(
    "--cloud",
    is_flag=True,
    help="Upload to the S3 registry of the deployment"
    " [env SPOTBOT_ARTIFACTS_BUCKET] instead; the next cloud job uses it.",
)
@home_option
@guarded
def models_import(path: str, replace: bool, cloud: bool, home: str | None) -> None:
    """Import a model folder (or model.tar.gz) with a bot.json; the next job uses it."""
    from spotbot.bots.registry import load_bot_class
    from spotbot.models import ModelManifest

    if cloud:
        from spotbot.cloud.training import upload_model

        uploaded = upload_model(Path(path), replace=replace)
        click.echo(f"imported {uploaded.bot} {uploaded.version} into the S3 registry", err=True)
        return
    registry = _home(home).registry()
    manifest = registry.import_model(path, replace=replace)
    try:
        load_bot_class(manifest.bot)
    except UsageError:
        registry.remove(manifest.bot, manifest.version)
        raise UsageError(f"the model is for bot {manifest.bot!r}, which is not installed") from None
    assert isinstance(manifest, ModelManifest)
    click.echo(f"imported {manifest.bot} {manifest.version} into {registry.root}", err=True)


@models.command("remove")
@click.argument("bot")
@click.argument("version")
@home_option
@guarded
def models_remove(bot: str, version: str, home: str | None) -> None:
    _home(home).registry().remove(bot, version)
    click.echo(f"removed {bot} {version}", err=True)


# -- train --------------------------------------------------------------------------------------
def _hyperparameters(pairs: tuple[str, ...]) -> dict[str, Any]:
    from training.run import parse_value

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

    from training.run import TrainRequest, check_data, run_training, trainer_for

    trainer_for(bot)
    hyper = _hyperparameters(pairs)
    if cloud:
        from spotbot.cloud.training import CloudTrainingOptions, train_in_cloud

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
        registry = _home(home).registry()
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
        _emit_json(manifest.to_dict())
    else:
        click.echo(
            f"trained {manifest.bot} {manifest.version}:"
            f" {json.dumps(manifest.metrics, ensure_ascii=False)}"
        )


# -- container entry points: the Batch worker and the SageMaker serving contract ------------
@main.command()
@click.option("--job-id", default=None, help="The job [env SPOTBOT_JOB_ID].")
@click.option(
    "--shard",
    type=click.IntRange(min=0),
    default=None,
    help="The shard [default: SPOTBOT_SHARD_OFFSET + AWS_BATCH_JOB_ARRAY_INDEX].",
)
@click.option(
    "--bot", default=None, help="Bot name or module:Class [env SPOTBOT_BOT; default: the job's]."
)
@click.option(
    "--model-version", default=None, help="Expected model version [env SPOTBOT_MODEL_VERSION]."
)
@click.option(
    "--inference",
    type=click.Choice(["in-container", "endpoint"]),
    default=None,
    help="Tag here or through the SageMaker endpoint [env SPOTBOT_INFERENCE; default: in-container].",
)
@click.option(
    "--endpoint-name", default=None, help="SageMaker endpoint [env SPOTBOT_ENDPOINT_NAME]."
)
@click.option(
    "--model-cache",
    type=click.Path(file_okay=False),
    default=None,
    help="Where downloaded models are kept [env SPOTBOT_MODEL_CACHE].",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Assets per model call."
)
@click.option("--page-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--read-concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@threads_option
@click.option(
    "--stop-grace",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a stop signal waits for the batch in hand before exiting without it.",
)
def work(
    job_id: str | None,
    shard: int | None,
    bot: str | None,
    model_version: str | None,
    inference: str | None,
    endpoint_name: str | None,
    model_cache: str | None,
    batch_size: int | None,
    page_size: int,
    read_concurrency: int,
    threads: int,
    stop_grace: float,
) -> None:
    """Work one shard of a cloud job (the Batch worker); exit 143 when stopped early."""
    from spotbot.cloud.settings import ConfigError
    from spotbot.worker import WorkerConfig
    from spotbot.worker_cloud import EXIT_USAGE, WorkerParams
    from spotbot.worker_cloud import main as work_main

    try:
        params = WorkerParams.from_env(
            job_id=job_id,
            shard=shard,
            bot=bot,
            model_version=model_version,
            inference=inference,
            endpoint_name=endpoint_name,
            model_cache=Path(model_cache) if model_cache else None,
            threads=threads,
            stop_grace_seconds=stop_grace,
            config=WorkerConfig(
                page_size=page_size, batch_size=batch_size, read_concurrency=read_concurrency
            ),
        )
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
        return
    sys.exit(work_main(params))


@main.command()
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Model folder with bot.json [env SM_MODEL_DIR; default: /opt/ml/model]; empty or"
    " missing: the bot's built-in model.",
)
@click.option("--bot", default=None, help="Bot name or module:Class [env SPOTBOT_BOT].")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="[env SAGEMAKER_BIND_TO_PORT; 8080]"
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Larger request bodies get 413 [env SPOTBOT_SERVE_MAX_BODY_MB; default: 6].",
)
@threads_option
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds SIGTERM waits for requests in flight.",
)
def serve(
    model_dir: str | None,
    bot: str | None,
    host: str,
    port: int | None,
    max_body_mb: float | None,
    threads: int,
    graceful_timeout: float,
) -> None:
    """Serve a bot in the SageMaker inference contract (GET /ping, POST /invocations)."""
    from spotbot.serving import ServeOptions
    from spotbot.serving import main as serve_main

    options = ServeOptions.from_env(
        model_dir=Path(model_dir) if model_dir else None,
        bot=bot,
        host=host,
        port=port,
        max_body_bytes=int(max_body_mb * 1024 * 1024) if max_body_mb else None,
        threads=threads,
        graceful_timeout=graceful_timeout,
    )
    sys.exit(serve_main(options))


if __name__ == "__main__":
    main()
