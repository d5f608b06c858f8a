"""What the REST API does to jobs: start (idempotent by client token), describe, cancel, retry.

The API function's routes call these with the adapters; the rules (which job may be cancelled
or retried, how a client token names a job, what a job's view holds) live here, once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from spotbot.aws.catalog import BotCatalog, CatalogResolver
from spotbot.aws.orchestration import BatchJobs, StepFunctions, execution_arn
from spotbot.aws.settings import CloudSettings, ConfigError
from spotbot.cloud.steps import (
    CANCEL_REQUESTED,
    is_cancel_requested,
    job_id_for_token,
    merge_options,
)
from spotbot.core.errors import JobConflictError, JobNotFoundError
from spotbot.core.guards import spend
from spotbot.core.records import Job, JobStatus, new_job_id, utcnow
from spotbot.core.steps import job_counts
from spotbot.core.store import TaskStore

RETRIES_KEY = "retry_executions"
#: Request fields that travel to the state machine (the execution input of workflows/tagging.py).
JOB_INPUT_FIELDS = (
    "bot",
    "source",
    "output",
    "shards",
    "model_version",
    "inference",
    "max_failure_pct",
    "only_new",
    "budget_usd",
    "per_asset_results",
    "min_failure_sample",
)


def _state_machine(settings: CloudSettings, retry: bool = False) -> str:
    arn = settings.retry_state_machine_arn if retry else settings.state_machine_arn
    if not arn:
        raise ConfigError("the state machine ARN is not configured")
    return arn


def start_job(
    settings: CloudSettings,
    catalog: BotCatalog,
    resolver: CatalogResolver,
    sfn: StepFunctions,
    request: dict[str, Any],
) -> tuple[str, bool]:
    """Check what can be checked cheaply, then start the execution named after the job.

    Returns (job id, started now). The same client token always gives the same job id, hence
    the same execution name, so a retried POST finds the first execution instead of a second.
    """
    bot_cls = catalog.bot_class(str(request["bot"]))
    settings.check_bucket_allowed(str(request["source"]), "source")
    settings.check_bucket_allowed(str(request["output"]), "output")
    resolver.resolve(bot_cls, request.get("model_version"))  # an unknown pin is a 4xx now
    token = request.get("client_token")
    job_id = job_id_for_token(str(token)) if token else new_job_id()
    # False flags stay out: the input is compared when a client token comes back.
    payload = {k: request[k] for k in JOB_INPUT_FIELDS if request.get(k) not in (None, False)}
    payload["job_id"] = job_id
    machine = _state_machine(settings)
    arn, started = sfn.start(machine, job_id, payload)
    if not started:
        existing = sfn.describe(arn)
        if existing is not None and existing.input != payload:
            raise JobConflictError(
                f"client token {token!r} was already used for a different request (job {job_id})"
            )
    return job_id, started


def _seconds_since(stamp: str | None) -> float | None:
    if not stamp:
        return None
    start = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return max((datetime.now(UTC) - start).total_seconds(), 0.0)


def _progress(job: Job, counts: dict[str, int]) -> tuple[float | None, float | None]:
    """(assets per second, seconds left) from what the workers finished since the job started."""
    finished = counts["done"] + counts["failed"]
    elapsed = _seconds_since(job.started_at)
    if job.status.is_final or not elapsed or not finished:
        return (round(finished / elapsed, 3) if elapsed and finished else None), None
    rate = finished / elapsed
    left = counts["pending"] + counts["running"]
    return round(rate, 3), round(left / rate, 1)


def _latest_execution(job: Job | None, job_id: str) -> str:
    retries = list(job.opts.retry_executions) if job else []
    return str(retries[-1]) if retries else job_id


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "bot": job.bot,
        "status": str(job.status),
        "model_version": job.model_version,
        "source": job.source,
        "output": job.output,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


def job_view(
    store: TaskStore, sfn: StepFunctions, settings: CloudSettings, job_id: str
) -> dict[str, Any]:
    """A job with counts per status, rate, ETA and its latest execution; 404 when neither exists."""
    try:
        job: Job | None = store.get_job(job_id)
    except JobNotFoundError:
        job = None
    name = _latest_execution(job, job_id)
    retry = name != job_id
    execution = None
    if settings.state_machine_arn and (not retry or settings.retry_state_machine_arn):
        execution = sfn.describe(execution_arn(_state_machine(settings, retry), name))
    if job is None and execution is None:
        raise JobNotFoundError(f"no job {job_id!r}")
    view: dict[str, Any] = {"job_id": job_id, "status": "STARTING", "counts": None}
    if job is not None:
        counts = job_counts(store, job_id)
        rate, eta = _progress(job, counts)
        view.update(job_summary(job))
        view.update(
            counts=counts,
            shards=job.shards,
            max_failure_pct=job.max_failure_pct,
            started_at=job.started_at,
            error=job.error,
            inference=job.opts.inference,
            endpoint_name=job.opts.endpoint_name,
            cancel_requested=is_cancel_requested(job),
            assets_per_second=rate,
            eta_seconds=eta,
            spend=spend(job, counts=counts),
        )
    if execution is not None:
        view["execution"] = {
            "name": execution.name,
            "status": execution.status,
            "started_at": execution.start_date,
            "stopped_at": execution.stop_date,
            "error": execution.error,
            "cause": execution.cause,
        }
        if job is None and execution.status != "RUNNING":
            view["status"] = "FAILED"  # init refused the request before recording the job
            view["error"] = execution.cause or execution.error
    return view


def cancel_job(store: TaskStore, batch: BatchJobs | None, job_id: str) -> dict[str, Any]:
    """Mark the job cancel-requested and terminate its Batch arrays; the machine cleans up.

    The running step then fails (a terminated array, or JobCancelledError from scan and
    endpoint), its Catch runs cleanup, and cleanup sets CANCELLED. Cancelling twice is fine.
    """
    job = store.get_job(job_id)
    if job.status.is_final:
        if job.status == JobStatus.CANCELLED:
            return {"job_id": job_id, "status": str(job.status), "terminated": 0}
        raise JobConflictError(f"job {job_id} already finished ({job.status})")
    if not is_cancel_requested(job):
        merge_options(store, job_id, **{CANCEL_REQUESTED: utcnow()})
    terminated = (
        batch.terminate_workers(job_id, "cancelled through the spotbot API") if batch else 0
    )
    return {"job_id": job_id, "status": "CANCELLING", "terminated": terminated}


def retry_job(
    store: TaskStore, sfn: StepFunctions, settings: CloudSettings, job_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Start the retry machine for a finished job that has FAILED tasks, or assets it never
    tagged (stopped early, at its budget): `budget_usd` gives it a new budget."""
    job = store.get_job(job_id)
    if not job.status.is_final:
        raise JobConflictError(f"job {job_id} is still {job.status}: retry it once it finished")
    counts = job_counts(store, job_id)
    failed = counts["failed"]
    if not failed and not counts["pending"] + counts["running"]:
        raise JobConflictError(f"job {job_id} has no failed or untagged assets to retry")
    retries = list(job.opts.retry_executions)
    if retries:
        # Requeue sets the job RUNNING a moment after the start: a second POST in that moment
        # must not start a second retry of the same tasks.
        last = sfn.describe(execution_arn(_state_machine(settings, retry=True), retries[-1]))
        if last is not None and last.status == "RUNNING":
            raise JobConflictError(f"job {job_id} is being retried ({retries[-1]})")
    name = f"{job_id}-retry{len(retries) + 1}"
    payload: dict[str, Any] = {"job_id": job_id}
    if body.get("max_failure_pct") is not None:
        payload["max_failure_pct"] = float(body["max_failure_pct"])
    if body.get("budget_usd") is not None:
        payload["budget_usd"] = float(body["budget_usd"])
    sfn.start(_state_machine(settings, retry=True), name, payload)
    merge_options(store, job_id, **{RETRIES_KEY: [*retries, name]})
    untagged = counts["pending"] + counts["running"]
    return {"job_id": job_id, "execution_name": name, "failed": failed, "untagged": untagged}
