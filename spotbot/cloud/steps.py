"""The cloud steps of a job (init, scan, finalize, requeue, cleanup) over the shared pipeline.

The Lambda handlers in ``functions/`` parse their event and call these; the payload contract
they implement is the docstring of ``workflows/tagging.py``. Everything here is idempotent:
the state machine retries a step that timed out, and a retried step must land the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from spotbot.aws.catalog import BotCatalog, CatalogResolver, CustomBotSpec
from spotbot.aws.locations import open_cloud_source, open_source
from spotbot.aws.orchestration import BatchJobs
from spotbot.aws.s3 import S3Sink
from spotbot.aws.settings import CloudSettings
from spotbot.cloud.estimate import spot_vcpu_hour_usd
from spotbot.core.bot import Bot
from spotbot.core.errors import JobCancelledError, JobNotFoundError, UnknownBotError, UsageError
from spotbot.core.guards import MIN_SAMPLE_OPTION, REQUESTS, s3_requests
from spotbot.core.limits import JobLimits, plan_chunks
from spotbot.core.records import CANCEL_REQUESTED, Job, JobStatus, utcnow
from spotbot.core.sinks import SUMMARY_JSON
from spotbot.core.steps import finalize_job, init_job, job_counts, requeue_job, scan_job
from spotbot.core.store import TaskStore

THRESHOLD_ERROR = "Spotbot.FailureThresholdExceeded"
BUDGET_ERROR = "Spotbot.BudgetExceeded"
#: The outcomes finalize hands to cleanup (and cleanup keeps as the job's final status).
FINAL_OUTCOMES = ("SUCCEEDED", "FAILED", "BUDGET_EXCEEDED")
MAX_CAUSE = 1000


def job_id_for_token(client_token: str) -> str:
    """The job id of a client token: the same token always names the same job (and execution)."""
    return "job-t" + hashlib.sha256(client_token.encode()).hexdigest()[:24]


def is_cancel_requested(job: Job) -> bool:
    return job.cancel_requested


def merge_options(store: TaskStore, job_id: str, **changes: Any) -> Job:
    """Set some keys of ``job.options`` without dropping keys another writer set meanwhile.

    The store replaces ``options`` whole, so the merge re-reads and writes again until the
    record holds both what it had and these changes (the window left is a few milliseconds).
    """
    for _ in range(5):
        job = store.get_job(job_id)
        store.update_job(job_id, options={**job.options, **changes})
        after = store.get_job(job_id)
        if all(after.options.get(k) == v for k, v in changes.items()) and all(
            k in after.options for k in job.options
        ):
            return after
    return store.get_job(job_id)


def _plan(job: Job, job_definition: str, limits: JobLimits, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "bot": job.bot,
        "model_version": str(job.model_version or ""),
        "inference": job.opts.inference or "in-container",
        "job_definition": job_definition,
        "shards": job.shards,
        "chunks": plan_chunks(job.shards, limits.max_array_size),
        "max_failure_pct": float(job.max_failure_pct),
        "poll_seconds": int(_given(job.opts.poll_seconds, limits.default_poll_seconds)),
        **extra,
    }


def _job_definition(
    bot: str, job_definitions: dict[str, str], custom: CustomBotSpec | None = None
) -> str:
    """The Batch job definition of a bot: the stack's for a deployed bot, else the one
    registered with a custom bot (spotbot/cloud/bots.py)."""
    if bot in job_definitions:
        return job_definitions[bot]
    if custom is not None and custom.job_definition_arn:
        return custom.job_definition_arn
    if custom is not None:
        raise UnknownBotError(
            f"bot {bot!r} was registered without a Batch job definition:"
            f" register it again (PUT /bots/{bot})"
        )
    deployed = ", ".join(sorted(job_definitions)) or "none"
    raise UnknownBotError(f"bot {bot!r} is not deployed here (deployed: {deployed})")


def init_step(
    store: TaskStore,
    settings: CloudSettings,
    catalog: BotCatalog,
    resolver: CatalogResolver,
    s3: Any,
    *,
    job_id: str,
    request: dict[str, Any],
    job_definitions: dict[str, str],
    limits: JobLimits,
) -> dict[str, Any]:
    """Validate the request, resolve the model, record the job; the plan the machine runs."""
    bot = str(request.get("bot") or "")
    bot_cls = catalog.bot_class(bot)
    job_definition = _job_definition(bot_cls.name, job_definitions, _custom(bot_cls))
    source_uri, output_uri = str(request.get("source") or ""), str(request.get("output") or "")
    settings.check_bucket_allowed(source_uri, "source")
    settings.check_bucket_allowed(output_uri, "output")
    try:
        shards = limits.shards_for(request.get("shards"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    inference = request.get("inference") or settings.default_inference
    if inference not in ("endpoint", "in-container"):
        raise UsageError(f"inference must be endpoint or in-container, got {inference!r}")
    pct = request.get("max_failure_pct")
    job = init_job(
        store,
        resolver,
        bot=bot,
        bot_cls=bot_cls,
        source=open_cloud_source(source_uri, settings, s3),
        sink=S3Sink(output_uri, client=s3),
        shards=shards,
        model=request.get("model_version"),
        max_failure_pct=float(limits.default_max_failure_pct if pct is None else pct),
        job_id=job_id,
        per_asset_results=bool(request.get("per_asset_results")),
        only_new=bool(request.get("only_new") or request.get("incremental")),
        budget_usd=request.get("budget_usd"),
        vcpu_hour_usd=spot_vcpu_hour_usd(),
    )
    if job.opts.inference is None:
        poll = int(_given(request.get("poll_seconds"), limits.default_poll_seconds))
        sample = request.get("min_failure_sample")
        if sample is not None and int(sample) < 1:
            raise UsageError(f"min_failure_sample must be at least 1, got {sample}")
        job = merge_options(
            store,
            job.id,
            inference=inference,
            poll_seconds=poll,
            **({MIN_SAMPLE_OPTION: int(sample)} if sample is not None else {}),
        )
    return _plan(job, job_definition, limits)


def scan_step(
    store: TaskStore,
    catalog: BotCatalog,
    s3: Any,
    *,
    job_id: str,
    budget_seconds: float,
    pages_before: int = 0,
    max_pages: int | None = None,
) -> dict[str, Any]:
    """One budgeted slice of the scan; the next cursor, its counts exact from the store."""
    job = store.get_job(job_id)
    if is_cancel_requested(job) or job.status == JobStatus.CANCELLED:
        raise JobCancelledError(f"job {job_id} was cancelled")
    progress = scan_job(
        store,
        job,
        open_source(job.source, client=s3),
        budget_seconds=budget_seconds,
        max_pages=max_pages,
        bot_cls=catalog.bot_class(job.bot),
    )
    if progress.complete:
        # unless_final: cleanup may have ended the job while this slice ran (a failed branch)
        store.update_job(job_id, unless_final=True, status=JobStatus.RUNNING)
    # Counted, not summed: a retried slice re-lists pages whose tasks already exist.
    counts = job_counts(store, job_id)
    return {
        "done": progress.complete,
        "continuation_token": progress.token,
        "pages": pages_before + progress.pages,
        "scanned": counts["total"],
        "accepted": counts["pending"],
    }


def finalize_step(
    store: TaskStore, s3: Any, *, job_id: str, max_failure_pct: float | None = None
) -> dict[str, Any]:
    """Counts, summary.json and results.jsonl in the output, and the job's final status.

    A job cancelled while its workers ran (or before they started, during the endpoint wait)
    is not finalized: JobCancelledError sends the machine to cleanup, which ends it CANCELLED.
    """
    job = store.get_job(job_id)
    if is_cancel_requested(job) or job.status == JobStatus.CANCELLED:
        raise JobCancelledError(f"job {job_id} was cancelled")
    if max_failure_pct is not None and max_failure_pct != job.max_failure_pct:
        job = store.update_job(job_id, max_failure_pct=float(max_failure_pct))
    # The S3 requests the job made, for the spend in summary.json and the job's record.
    made = s3_requests(job, job_counts(store, job_id), finalized=True)
    if made is not None:
        job = merge_options(store, job_id, **{REQUESTS: made})
    sink = S3Sink(job.output, client=s3)
    summary = finalize_job(store, sink, job, source=open_source(job.source, client=s3))
    counts = job_counts(store, job_id)
    status = str(summary["status"])
    errors = {"FAILED": THRESHOLD_ERROR, "BUDGET_EXCEEDED": BUDGET_ERROR}
    return {
        # BUDGET_EXCEEDED: stopped at the budget with the results so far; a retry goes on.
        "status": status if status in FINAL_OUTCOMES else "FAILED",
        "error": errors.get(status, ""),
        "cause": str(summary.get("error") or "")[:MAX_CAUSE],
        "counts": counts,
        "failed_pct": float(summary["failed_pct"]),
        "summary_uri": sink.location(job_id, SUMMARY_JSON),
    }


def requeue_step(
    store: TaskStore,
    *,
    job_id: str,
    request: dict[str, Any],
    job_definitions: dict[str, str],
    limits: JobLimits,
    catalog: BotCatalog | None = None,
) -> dict[str, Any]:
    """Put the job's unfinished and failed tasks back to PENDING and the job back to RUNNING.

    `catalog` finds a custom bot's job definition; without one only deployed bots retry.
    """
    job = store.get_job(job_id)
    custom = None
    if job.bot not in job_definitions and catalog is not None:
        custom = _custom(catalog.bot_class(job.bot))
    job_definition = _job_definition(job.bot, job_definitions, custom)
    pending = requeue_job(store, job_id, request.get("max_failure_pct"), request.get("budget_usd"))
    options: dict[str, Any] = {CANCEL_REQUESTED: None}
    if request.get("poll_seconds") is not None:
        options["poll_seconds"] = int(request["poll_seconds"])
    job = merge_options(store, job_id, **options)
    # `requeued` is what the workers will find: every pending task, whatever left it pending
    # (a retried requeue finds nothing left to reset but the same pending tasks).
    return _plan(job, job_definition, limits, requeued=pending)


def _custom(bot_cls: type[Bot]) -> CustomBotSpec | None:
    spec: CustomBotSpec | None = getattr(bot_cls, "custom", None)
    return spec


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text) if text.startswith("{") else None
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _batch_reason(job: dict[str, Any]) -> str:
    """A failed Batch job as Step Functions describes it (DescribeJobs, PascalCase), in a line."""
    text = f"Batch job {job.get('JobName') or job.get('JobId')} {job.get('Status') or 'FAILED'}"
    if job.get("StatusReason"):
        text += f": {job['StatusReason']}"
    summary = (job.get("ArrayProperties") or {}).get("StatusSummary") or {}
    if summary.get("FAILED"):
        text += f" ({summary['FAILED']} of {sum(summary.values())} array children failed)"
    return text


def readable_cause(error: str | None, cause: str | None) -> str:
    """A one-paragraph cause for people, no trace: a Lambda's JSON error becomes its message, a
    Batch job's description its status reason, a branch's re-raised {"Error", "Cause"} what it
    wraps (see workflows.tagging.RERAISED_CAUSE)."""
    text = (cause or "").strip()
    for _ in range(4):  # envelopes nest: a re-raise around a Lambda error or a Batch job
        parsed = _json_object(text)
        if parsed is None:
            break
        if "JobName" in parsed and "Status" in parsed:
            text = _batch_reason(parsed)
            break
        if "Error" in parsed and "errorMessage" not in parsed:
            error = str(parsed.get("Error") or "") or error
            text = str(parsed.get("Cause") or "").strip()
            continue
        text = str(parsed.get("errorMessage") or parsed.get("Cause") or parsed.get("cause") or "")
        error = error or parsed.get("errorType")
        break
    if not text:
        text = f"the job failed with {error}" if error else "the job failed"
    return text[:MAX_CAUSE]


def cleanup_step(
    store: TaskStore,
    batch: BatchJobs | None,
    release_endpoint: Any,
    *,
    job_id: str,
    outcome_status: str,
    error: str | None,
    cause: str | None,
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Stop what the job started and set its final status; safe to run any number of times.

    `release_endpoint(job) -> bool` deletes the job's endpoint unless another running job
    uses it (:func:`spotbot.cloud.endpoints.release_job_endpoint`). `announce(detail)`
    publishes the job's end (every path ends here: success, failure, cancel).
    """
    try:
        job: Job | None = store.get_job(job_id)
    except JobNotFoundError:
        job = None  # init failed before the record existed: nothing to stop
    if batch is not None:
        batch.terminate_workers(job_id, f"spotbot cleanup of {job_id} ({outcome_status})")
    deleted = bool(job and release_endpoint(job))
    if job is not None and (is_cancel_requested(job) or job.status == JobStatus.CANCELLED):
        status, error, cause = "CANCELLED", "Spotbot.JobCancelled", "The job was cancelled."
    elif outcome_status == "SUCCEEDED" and job is not None:
        status, error, cause = "SUCCEEDED", "", ""
    elif outcome_status == "BUDGET_EXCEEDED" and job is not None:
        status, error = "BUDGET_EXCEEDED", error or BUDGET_ERROR
        cause = readable_cause(error, cause)
    else:
        status, cause = "FAILED", readable_cause(error, cause)
        error = error or "Spotbot.JobFailed"
        if error.startswith("States."):
            # The machine's JobFailed state reports this name, and states may not report
            # "States." names (the execution would end in States.Runtime instead).
            error = "Spotbot." + error.removeprefix("States.")
    if job is not None and (status != "SUCCEEDED" or job.status != JobStatus.SUCCEEDED):
        store.update_job(
            job_id,
            status=JobStatus(status),
            finished_at=job.finished_at if job.status == status else utcnow(),
            error=cause or None,
        )
    if announce is not None and job is not None:
        announce(
            {
                "job_id": job_id,
                "bot": job.bot,
                "status": status,
                "counts": job_counts(store, job_id),
                "error": error or "",
                "cause": cause[:MAX_CAUSE],
                "output": job.output,
            }
        )
    return {
        "job_id": job_id,
        "status": status,
        "error": error or "",
        "cause": cause[:MAX_CAUSE],
        "endpoint_deleted": deleted,
    }


def _given(value: Any, default: Any) -> Any:
    """`value` unless it is missing: a zero (e.g. no wait between polls) is a real setting."""
    return default if value is None else value
