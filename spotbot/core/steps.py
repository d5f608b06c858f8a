"""The steps of a job, shared by the local runner and the cloud functions: init, scan, finalize."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Protocol

from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot
from spotbot.core.cost import SourceSample
from spotbot.core.errors import UsageError
from spotbot.core.guards import set_options, spend
from spotbot.core.plugins import load_bot_class
from spotbot.core.records import (
    REUSED_FROM,
    Job,
    JobOptions,
    JobStatus,
    Result,
    Task,
    TaskStatus,
    new_job_id,
    shard_of,
    utcnow,
)
from spotbot.core.report import report_collector, write_report
from spotbot.core.shard import job_bot_class
from spotbot.core.sinks import RESULTS_JSONL, ResultSink
from spotbot.core.sources import ScanEntry, Source
from spotbot.core.store import TaskStore
from spotbot.core.worker import DEFAULT_MAX_ASSET_BYTES


class ModelResolver(Protocol):
    def resolve(self, bot: type[Bot], pin: str | None = None) -> ModelRef: ...


def init_job(
    store: TaskStore,
    registry: ModelResolver,
    *,
    bot: str,
    source: Source,
    sink: ResultSink,
    shards: int = 1,
    model: str | None = None,
    max_failure_pct: float = 100.0,
    max_asset_bytes: int = DEFAULT_MAX_ASSET_BYTES,
    job_id: str | None = None,
    bot_cls: type[Bot] | None = None,
    per_asset_results: bool = False,
    only_new: bool = False,
    budget_usd: float | None = None,
    vcpu_hour_usd: float | None = None,
) -> Job:
    """Validate a request, resolve the model version and record the job (idempotent by job id).

    `registry` is the local ModelRegistry or the cloud's S3ModelRegistry: anything that
    resolves a bot and an optional pin to a ModelRef. `bot_cls` is given for bots that are not
    installed classes (the cloud's registered custom bots).
    """
    bot_cls = bot_cls or load_bot_class(bot)
    if not 0 <= max_failure_pct <= 100:
        raise UsageError(f"max failures must be a percentage in [0, 100], got {max_failure_pct}")
    if shards < 1:
        raise UsageError(f"shards must be at least 1, got {shards}")
    if max_asset_bytes < 1:
        raise UsageError("the asset size cap must be positive")
    if budget_usd is not None and budget_usd <= 0:
        raise UsageError(f"the budget must be a positive amount of USD, got {budget_usd}")
    source.check_readable()
    sink.check_writable()
    ref = registry.resolve(bot_cls, model)
    job = Job(
        id=job_id or new_job_id(),
        bot=bot_cls.name,
        source=source.uri,
        output=sink.uri,
        shards=shards,
        model_version=ref.version,
        max_failure_pct=max_failure_pct,
        options=JobOptions(
            bot_spec=bot,
            model_path=str(ref.path) if ref.path else None,
            model_origin=ref.origin,
            max_asset_bytes=max_asset_bytes,
            per_asset_results=per_asset_results or None,
            only_new=only_new or None,
            budget_usd=budget_usd,
            vcpu_hour_usd=vcpu_hour_usd,
        ).to_dict(),
    )
    return store.create_job(job)


@dataclass(slots=True)
class ScanProgress:
    pages: int
    tasks: int  # new tasks written by this call
    token: str | None
    complete: bool


def task_for(job: Job, bot_cls: type[Bot], entry: ScanEntry, max_asset_bytes: int) -> Task:
    """The task for one listed object: PENDING if the bot will tag it, else SKIPPED or FAILED."""
    task = Task(
        job_id=job.id,
        key=entry.key,
        shard=shard_of(entry.key, job.shards),
        size=entry.size,
        fingerprint=entry.fingerprint,
    )
    if entry.error:
        task.status, task.error = TaskStatus.FAILED, entry.error
    elif entry.skip_reason:
        task.status, task.error = TaskStatus.SKIPPED, entry.skip_reason
    elif not bot_cls.accepts(entry.key):
        suffix = PurePosixPath(entry.key).suffix.lower() or "no extension"
        task.status, task.error = TaskStatus.SKIPPED, f"not accepted by {bot_cls.name} ({suffix})"
    elif entry.size == 0:
        task.status, task.error = TaskStatus.FAILED, "empty file (0 bytes)"
    elif entry.size is not None and entry.size > max_asset_bytes:
        task.status = TaskStatus.FAILED
        task.error = (
            f"asset too large: {entry.size / 1e6:.1f} MB is over the"
            f" {max_asset_bytes / 1e6:.1f} MB cap"
        )
    return task


#: Listing pages an estimate reads before it stops and calls its figures a lower bound.
ESTIMATE_PAGES = 10


def sample_source(
    source: Source,
    bot_cls: type[Bot],
    max_pages: int = ESTIMATE_PAGES,
    max_asset_bytes: int = DEFAULT_MAX_ASSET_BYTES,
) -> SourceSample:
    """Step 0 (estimate): count and size what the bot would tag, over the first `max_pages`
    listing pages; whether the listing ended there is part of the answer."""
    if max_pages < 1:
        raise UsageError("an estimate reads at least one listing page")
    probe = Job(id="estimate", bot=bot_cls.name, source=source.uri, output="")
    listed = accepted = size = pages = 0
    complete = False
    for page in source.scan_pages():
        pages += 1
        listed += len(page.entries)
        for entry in page.entries:
            if task_for(probe, bot_cls, entry, max_asset_bytes).status == TaskStatus.PENDING:
                accepted += 1
                size += entry.size or 0
        if page.next_token is None:
            complete = True
            break
        if pages >= max_pages:
            break
    return SourceSample(listed, accepted, size, pages, complete)


def scan_job(
    store: TaskStore,
    job: Job,
    source: Source,
    *,
    budget_seconds: float | None = None,
    max_pages: int | None = None,
    on_page: Callable[[int], None] | None = None,
    bot_cls: type[Bot] | None = None,
    write_batch: int = 0,
) -> ScanProgress:
    """List the source from the job's scan token and write its tasks, page by page.

    Stops early (returning the continuation token) when the time or page budget runs out, so
    a Lambda can call it in a loop; the token is saved with the job after each write of tasks,
    so a crash never skips a page (re-writing one is harmless).

    `write_batch`: write the tasks of several listing pages at once, up to this many (the
    writes grow from one page to it, so the first tasks are there at once). A local store
    pays per write for every index page a write touches: fewer, larger writes cost less.
    """
    bot_cls = bot_cls or job_bot_class(job)
    cap = job.opts.max_asset_bytes or DEFAULT_MAX_ASSET_BYTES
    deadline = time.monotonic() + budget_seconds if budget_seconds else None
    if job.status in (JobStatus.CREATED, JobStatus.INTERRUPTED):
        job = store.update_job(
            job.id,
            unless_final=True,
            status=JobStatus.SCANNING,
            started_at=job.started_at or utcnow(),
        )
    pages = written = flushed = 0
    token = job.scan_token
    held: list[Task] = []  # listed, not written yet
    held_reused: list[Result] = []

    def write(next_token: str | None) -> None:
        nonlocal written, flushed
        flushed += len(held)
        written += store.put_tasks(held)
        # After the tasks, so a crash in between leaves them DONE without a result, which
        # the next scan's reuse (idempotent, same results) completes.
        store.complete_tasks(held_reused)
        store.update_job(job.id, scan_token=next_token, scan_complete=next_token is None)
        held.clear()
        held_reused.clear()

    for page in source.scan_pages(token):
        tasks = [task_for(job, bot_cls, entry, cap) for entry in page.entries]
        held_reused.extend(reuse_results(store, job, tasks) if job.opts.only_new else [])
        held.extend(tasks)
        pages += 1
        token = page.next_token
        out_of_budget = bool(
            (max_pages and pages >= max_pages) or (deadline and time.monotonic() >= deadline)
        )
        if token is None or out_of_budget or len(held) >= min(write_batch, max(flushed, 1)):
            write(token)
        if on_page:
            on_page(len(tasks))
        if token is None:
            return ScanProgress(pages, written, None, True)
        if out_of_budget:
            return ScanProgress(pages, written, token, False)
    write(None)
    return ScanProgress(pages, written, None, True)


def reuse_results(store: TaskStore, job: Job, tasks: list[Task]) -> list[Result]:
    """Never pay twice: the page's tasks whose asset (key, size, fingerprint) already has a
    DONE result of an earlier job with this bot and model version are set DONE, and that
    result, marked with the job it came from, is returned to be recorded as this job's."""
    wanted = [t for t in tasks if t.status == TaskStatus.PENDING and t.fingerprint]
    if not wanted:
        return []
    found = store.find_reusable(job.bot, job.model_version, wanted, exclude_job=job.id)
    results = []
    for task in wanted:
        prior = found.get(task.key)
        if prior is None:
            continue
        task.status = TaskStatus.DONE
        results.append(
            Result(
                job_id=job.id,
                key=task.key,
                bot=job.bot,
                model_version=job.model_version,
                status=TaskStatus.DONE,
                tags=prior.tags,
                extra={**prior.extra, REUSED_FROM: prior.reused_from or prior.job_id},
            )
        )
    return results


def requeue_job(
    store: TaskStore,
    job_id: str,
    max_failure_pct: float | None = None,
    budget_usd: float | None = None,
) -> int:
    """Put a job's failed and unfinished tasks back to PENDING and the job back to RUNNING,
    for a retry (local `spotbot retry`, the cloud's retry machine); the tasks now pending."""
    # RUNNING leftovers of a dead worker first (with no attempt cap: a retry is a fresh start),
    # then the failed ones, which the store gives a fresh attempt count.
    store.reclaim_running(job_id, max_attempts=1 << 30)
    store.requeue_failed(job_id)
    changes: dict[str, Any] = {"status": JobStatus.RUNNING, "finished_at": None, "error": None}
    if max_failure_pct is not None:
        changes["max_failure_pct"] = float(max_failure_pct)
    store.update_job(job_id, **changes)
    reopen_job(store, job_id, budget_usd)
    return job_counts(store, job_id)["pending"]


def reopen_job(store: TaskStore, job_id: str, budget_usd: float | None = None) -> Job:
    """Lift an early stop (failures, budget) so the job can go on, with a new budget if given."""
    if budget_usd is not None and budget_usd <= 0:
        raise UsageError(f"the budget must be a positive amount of USD, got {budget_usd}")
    changes: dict[str, Any] = {"abort_reason": None, "abort_status": None}
    if budget_usd is not None:
        changes["budget_usd"] = float(budget_usd)
    return set_options(store, job_id, **changes)


def job_counts(store: TaskStore, job_id: str) -> dict[str, int]:
    counts = store.count_tasks(job_id)
    return {
        "total": sum(counts.values()),
        "done": counts[TaskStatus.DONE],
        "failed": counts[TaskStatus.FAILED],
        "skipped": counts[TaskStatus.SKIPPED],
        "pending": counts[TaskStatus.PENDING],
        "running": counts[TaskStatus.RUNNING],
    }


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return max((parse(end) - parse(start)).total_seconds(), 0.0)


def finalize_job(
    store: TaskStore, sink: ResultSink, job: Job, source: Source | None = None
) -> dict[str, Any]:
    """Count, write results.jsonl, summary.json and report.html (thumbnails read from `source`),
    and set the job's final status."""
    counts = job_counts(store, job.id)
    unfinished = counts["pending"] + counts["running"]
    aborted = job.options.get("abort_reason")
    if unfinished and not aborted:
        raise UsageError(f"job {job.id} still has {unfinished} unfinished tasks")
    store.update_job(job.id, status=JobStatus.FINALIZING)
    reused = 0
    # A carried-over result's line holds the key (inside a JSON string it would be escaped).
    mark = f'"{REUSED_FROM}": '.encode()
    # One pass over the stored results writes results.jsonl and feeds the report.
    report = report_collector(job, source)

    def counting(lines: Iterator[tuple[bytes, str | None]]) -> Iterator[bytes]:
        nonlocal reused
        for line, finished_at in lines:
            reused += mark in line
            report.add_record(json.loads(line), finished_at)
            yield line

    sink.put_lines(job.id, RESULTS_JSONL, counting(store.iter_finished_lines(job.id)))
    attempted = counts["done"] + counts["failed"]
    failed_pct = 100.0 * counts["failed"] / attempted if attempted else 0.0
    status, error = JobStatus.SUCCEEDED, None
    if aborted:
        status = JobStatus(job.options.get("abort_status") or JobStatus.FAILED)
        error = f"{aborted}; {unfinished} assets were not tagged"
    elif failed_pct > job.max_failure_pct:
        status = JobStatus.FAILED
        error = (
            f"{counts['failed']} of {attempted} assets failed ({failed_pct:.1f}%), over the"
            f" {job.max_failure_pct:g}% allowed"
        )
    finished = utcnow()
    elapsed = _seconds_between(job.started_at, finished)
    summary = {
        "job_id": job.id,
        "bot": job.bot,
        "model_version": job.model_version,
        "source": job.source,
        "output": sink.location(job.id),
        "status": str(status),
        "error": error,
        "counts": {k: counts[k] for k in ("total", "done", "failed", "skipped")},
        "reused": reused,  # results carried over from earlier jobs (only-new), among done
        "failed_pct": round(failed_pct, 2),
        "started_at": job.started_at,
        "finished_at": finished,
        "assets_per_second": round(attempted / elapsed, 3) if elapsed else None,
        "remaining": unfinished,
        "spend": spend(store.get_job(job.id)),
    }
    sink.write_summary(job.id, summary)
    write_report(store, sink, job, summary, source, collected=report)
    store.update_job(job.id, status=status, finished_at=finished, error=error)
    return summary
