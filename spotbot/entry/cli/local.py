"""Local commands: bots, tag, resume, retry, export, report, jobs, status and search."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from spotbot.aws.locations import open_sink, open_source
from spotbot.core.artifacts import resolve_model
from spotbot.core.errors import SourceError, SpotbotError, UsageError
from spotbot.core.export import FORMATS, export_rows, write_table
from spotbot.core.guards import spend
from spotbot.core.plugins import available_bots, load_bot_class
from spotbot.core.records import JobStatus
from spotbot.core.report import stored_summary, write_report
from spotbot.core.sources import Source
from spotbot.core.steps import job_counts, reopen_job, requeue_job
from spotbot.core.worker import WorkerConfig
from spotbot.entry.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    emit_json,
    guarded,
    home_option,
    json_option,
    main,
    open_home,
)
from spotbot.entry.cli.cost import local_vcpu_hour_usd
from spotbot.entry.local_runner import LocalRunner, Progress, RunOutcome, default_workers


# -- bots -------------------------------------------------------------------------------------
def budget_option(lead: str) -> Any:
    """`--budget-usd`, as tag (a first budget), resume and retry (a new one) take it."""
    return click.option(
        "--budget-usd",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help=f"{lead} before the spend (CPU-hours at the calibration's price) would pass this"
        " many USD; the job ends BUDGET_EXCEEDED and `spotbot resume` goes on.",
    )


@main.command()
@home_option
@json_option
@guarded
def bots(home: str | None, as_json: bool) -> None:
    """The installed bots: what each accepts and which model it would use."""
    registry = open_home(home).registry()
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
        emit_json(rows)
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
            emit_json({"job_id": job.id, "status": str(job.status)})
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
            + (f" (reused {summary['reused']})" if summary.get("reused") else "")
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
        emit_json(summary)
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
@click.option(
    "--per-asset-results",
    is_flag=True,
    help="Also write OUT/<job_id>/results/<key>.json per asset (results.jsonl always).",
)
@click.option(
    "--only-new",
    is_flag=True,
    help="Reuse the results of earlier jobs (same bot and model version) for assets that"
    " have not changed (key, size, mtime); tag only the rest.",
)
@budget_option("Stop claiming assets")
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
    per_asset_results: bool,
    only_new: bool,
    budget_usd: float | None,
    job_id: str | None,
    home: str | None,
    as_json: bool,
) -> None:
    """Tag every asset under SOURCE (a folder or s3://bucket/prefix) with a bot."""
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
        per_asset_results=per_asset_results,
        only_new=only_new,
        budget_usd=budget_usd,
        vcpu_hour_usd=local_vcpu_hour_usd(open_home(home)),
    )
    click.echo(f"job {job.id}: {job.bot} (model {job.model_version}) over {job.source}", err=True)
    _run(runner, job.id, as_json)


@main.command()
@click.argument("job_id")
@click.option("--workers", type=click.IntRange(min=1), default=None)
@budget_option("A new budget: stop claiming")
@home_option
@json_option
@guarded
def resume(
    job_id: str, workers: int | None, budget_usd: float | None, home: str | None, as_json: bool
) -> None:
    """Finish a job that was interrupted, killed, or failed (a worker crash, a model that
    would not load): its unfinished assets are tagged, and it is finalized again."""
    runner = _runner(home, workers, as_json)
    with runner.home.store() as store:
        job = store.get_job(job_id)
        if budget_usd is not None:
            job = reopen_job(store, job_id, budget_usd)

    runner.config = WorkerConfig(
        max_asset_bytes=job.opts.max_asset_bytes or runner.config.max_asset_bytes
    )
    click.echo(f"resuming job {job.id} ({job.status})", err=True)
    _run(runner, job.id, as_json, reopen_failed=True)


def _runner(
    home: str | None, workers: int | None, as_json: bool, config: Any = None
) -> LocalRunner:
    return LocalRunner(open_home(home).root, workers=workers or default_workers(), config=config)


def _run(runner: LocalRunner, job_id: str, as_json: bool, reopen_failed: bool = False) -> None:
    _install_interrupt(runner)
    with _Display(enabled=True) as display:
        runner.on_progress = display
        outcome = runner.run(job_id, reopen_failed=reopen_failed)
    _finish(outcome, as_json)


@main.command()
@click.argument("job_id")
@click.option("--workers", type=click.IntRange(min=1), default=None)
@click.option(
    "--max-failures",
    "max_failure_pct",
    type=click.FloatRange(0, 100),
    default=None,
    help="A new failure threshold for the retry [default: the job's].",
)
@budget_option("A new budget: stop claiming")
@home_option
@json_option
@guarded
def retry(
    job_id: str,
    workers: int | None,
    max_failure_pct: float | None,
    budget_usd: float | None,
    home: str | None,
    as_json: bool,
) -> None:
    """Tag a finished job's FAILED assets again (the cloud's retry, on this machine)."""
    runner = _runner(home, workers, as_json)
    with runner.home.store() as store:  # a finished job has no runner: no lock to take yet
        job = store.get_job(job_id)
        if not job.status.is_final:
            raise UsageError(f"job {job_id} is {job.status}: `spotbot resume {job_id}` finishes it")
        pending = requeue_job(store, job_id, max_failure_pct, budget_usd)
    runner.config = WorkerConfig(
        max_asset_bytes=job.opts.max_asset_bytes or runner.config.max_asset_bytes
    )
    click.echo(f"retrying job {job_id}: {pending} assets to tag again", err=True)
    _run(runner, job_id, as_json)


@main.command()
@click.argument("job_id")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The file to write.")
@home_option
@guarded
def export(job_id: str, fmt: str, out: str, home: str | None) -> None:
    """A job's results as a table, one row per asset and tag (CSV or Parquet)."""
    with open_home(home).store() as store:
        store.get_job(job_id)  # an unknown job is a usage error, not an empty file
        rows = write_table(export_rows(store.iter_results(job_id)), Path(out), fmt)
    click.echo(f"{rows} rows -> {out}", err=True)


@main.command()
@click.argument("job_id")
@home_option
@guarded
def report(job_id: str, home: str | None) -> None:
    """Write a finished job's report.html again (thumbnails read from its source)."""
    with open_home(home).store() as store:
        job = store.get_job(job_id)
        if not job.status.is_final:
            raise UsageError(f"job {job_id} is {job.status}: its report is written when it ends")
        sink = open_sink(job.output)
        summary = stored_summary(store, sink, job)
        try:
            source: Source | None = open_source(job.source)
        except SourceError as exc:  # moved or deleted since: the report, without thumbnails
            click.echo(f"no thumbnails: {exc}", err=True)
            source = None
        where = write_report(store, sink, job, summary, source)
    click.echo(f"report -> {where}", err=True)


# -- jobs / status ----------------------------------------------------------------------------
@main.command()
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@home_option
@json_option
@guarded
def jobs(limit: int, home: str | None, as_json: bool) -> None:
    """Recent jobs, newest first."""
    with open_home(home).store() as store:
        rows = [j.to_dict() for j in store.list_jobs(limit)]
    if as_json:
        emit_json(rows)
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
    with open_home(home).store() as store:
        job = store.get_job(job_id)
        data = job.to_dict() | {"counts": job_counts(store, job_id), "spend": spend(job)}
    data.pop("options", None)
    data.pop("scan_token", None)
    if as_json:
        emit_json(data)
        return
    c = data["counts"]
    click.echo(f"{job.id}  {job.status}  bot={job.bot} model={job.model_version}")
    click.echo(f"  source {job.source} -> {job.output}")
    click.echo(
        f"  total {c['total']}  done {c['done']}  failed {c['failed']}  skipped {c['skipped']}"
        f"  pending {c['pending']}  running {c['running']}"
    )
    s = data["spend"]
    money = f" = ${s['usd']:.4f}" if "usd" in s else ""
    budget = f" of a ${s['budget_usd']:.4f} budget" if "budget_usd" in s else ""
    click.echo(f"  spend {s['cpu_hours']:.4f} CPU-hours{money}{budget}")
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
    with open_home(home).store() as store:
        hits = store.search(query, bot=bot, job_id=job_id, limit=limit)
    if as_json:
        emit_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no match", err=True)
    for hit in hits:
        what = hit.text.replace("\n", " / ") if hit.text else ", ".join(hit.labels[:5])
        click.echo(f"{hit.job_id}  {hit.key}  [{hit.bot}]  {what}")
