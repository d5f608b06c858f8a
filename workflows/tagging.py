"""The tagging state machine and the retry-failed-assets machine, built as ASL dicts.

``build_definition(refs)`` and ``build_retry_definition(refs)`` take a :class:`TaggingRefs`
of plain strings and numbers and return the definition; ``python -m workflows.render``
writes them beside this module, where a test keeps file and builder in step.

Shape of the tagging machine::

    InitJob -> Prepare (Parallel)
                 ├─ StartScan -> ScanAssets <-> ScanMore?          (loop until done)
                 └─ EndpointMode? -> EnsureEndpoint -> EndpointReady? -> StartEndpointPolls
                                      -> WaitForEndpoint -> DescribeEndpoint -> EndpointStatus?
                                      (InService: ready; Failed...: EndpointFailed; else loop,
                                       at most max_endpoint_polls times)
            -> AnyAssets? -> RunWorkers (Map over array chunks: batch:submitJob.sync) -> FinalizeJob
            -> RecordOutcome -> CleanupJob -> JobFinished?
            -> JobSucceeded | JobCancelled | JobFailed
    Every Catch -> RecordFailure -> CleanupJob (so the endpoint is deleted on every path).

Data layout: the execution input (the job request) stays at the root; each state writes its
trimmed result under its own key: ``$.job`` (init / requeue), ``$.prepare``, ``$.work``,
``$.finalize``, ``$.outcome``, ``$.cleanup``, ``$.error`` (a caught error). Only ids, counts
and tokens travel; the chunk list is bounded by ``max_shards / max_array_size`` entries.

Payload contract (what each Lambda receives as its event and must return; extra output
fields are dropped by ``ResultSelector``, missing ones fail the state):

init (``InitJob``)
    in:  ``request`` (the execution input: ``job_id``?, ``bot``, ``source``, ``output``,
         ``shards``?, ``model_version``?, ``inference``? "endpoint" | "in-container",
         ``max_failure_pct``?, ``poll_seconds``?, ``budget_usd``?, ``only_new``? (or
         ``incremental``?), ``per_asset_results``?, ``min_failure_sample``?),
         ``execution_name`` (the job id when the
         request has none), ``job_definitions`` {bot: Batch job definition ARN},
         ``limits`` {``default_shards``, ``max_shards``, ``max_array_size``,
         ``default_poll_seconds``, ``default_max_failure_pct``}.
    does: validates (bot deployed, source readable, output allowed), resolves the model
         version, creates the job record (idempotent on ``job_id``).
    out: ``job_id``, ``bot``, ``model_version`` (str), ``inference``, ``job_definition``,
         ``shards`` (int, 2 <= shards <= max_shards: a Batch array has at least 2 children),
         ``chunks`` [{``index``, ``offset``, ``size``}] (:func:`plan_chunks`),
         ``max_failure_pct`` (float), ``poll_seconds`` (int).
    errors: the ``spotbot.core.errors`` class names (``UnknownBotError``, ``SourceError``, ...).

scan (``ScanAssets``, looped)
    in:  ``job_id``, ``budget_seconds`` (stop listing after this long), ``cursor``
         {``done``, ``continuation_token`` (null at first), ``pages``, ``scanned``, ``accepted``}.
    does: lists pages from the token, bulk-writes accepted assets as PENDING tasks with their
         shard, stops before the budget; raises ``JobCancelledError`` if the job was cancelled.
    out: the next cursor, counts cumulative: ``done`` (bool), ``continuation_token``
         (str | null), ``pages``, ``scanned``, ``accepted`` (ints).

endpoint (``EnsureEndpoint``, endpoint mode only)
    in:  ``job_id``, ``bot``, ``model_version``.
    does: creates or reuses the SageMaker model, endpoint config and endpoint of
         (bot, model version); records the endpoint name in the job record. Never waits.
    out: ``endpoint_name``, ``created`` (bool), ``status`` (SageMaker EndpointStatus).

finalize (``FinalizeJob``)
    in:  ``job_id``, ``max_failure_pct``, ``workers`` [{``batch_job_id``, ``status``}].
    does: counts task states, writes ``summary.json`` and the result manifest, sets the job's
         status (FAILED when failed/total*100 > max_failure_pct, or when the workers stopped
         early for failures; BUDGET_EXCEEDED when they stopped at the budget).
    out: ``status`` "SUCCEEDED" | "FAILED" | "BUDGET_EXCEEDED", ``error`` ("",
         "Spotbot.FailureThresholdExceeded" or "Spotbot.BudgetExceeded"),
         ``cause`` (readable, "" on success), ``counts`` {``total``, ``done``, ``failed``,
         ``skipped``, ``pending``, ``running``}, ``failed_pct`` (float), ``summary_uri``.

cleanup (``CleanupJob``)
    in:  ``request``, ``execution_name`` (job id = ``request.job_id`` or ``execution_name``),
         ``outcome`` {``status`` "SUCCEEDED" | "FAILED" | "BUDGET_EXCEEDED", ``failure``
         {``Error``, ``Cause``?}}.
         The same function also receives EventBridge "Step Functions Execution Status
         Change" events (ABORTED / TIMED_OUT executions, where no state runs cleanup).
    does: terminates the job's Batch jobs still running, deletes the endpoint the job created
         unless another running job uses it, sets the final status (CANCELLED when a cancel
         was requested, FAILED with a readable cause on failure). Idempotent.
    out: ``job_id``, ``status`` "SUCCEEDED" | "FAILED" | "CANCELLED" | "BUDGET_EXCEEDED"
         (JobFailed reports the last as Spotbot.BudgetExceeded), ``error`` (never a
         "States." name, which JobFailed could not report: States.X comes back as Spotbot.X),
         ``cause``
         (readable, no stack trace, at most 1,000 characters), ``endpoint_deleted`` (bool).

requeue (``RequeueTasks``, retry machine)
    in:  as init, but ``request`` is {``job_id``, ``max_failure_pct``?, ``poll_seconds``?,
         ``budget_usd``? (a new budget)}.
    does: resets every task of the job that is not DONE or SKIPPED to PENDING (keeping its
         shard and attempt count), lifts an early stop, and sets the job RUNNING.
    out: as init, plus ``requeued`` (int).

Batch workers get, per array job, the environment ``spotbot.core.envnames.WORKER_JOB_VARIABLES``;
a child's shard is ``SPOTBOT_SHARD_OFFSET + AWS_BATCH_JOB_ARRAY_INDEX``.

Cancel: ``DELETE /jobs/{id}`` marks the job cancel-requested and terminates its Batch jobs
(named ``<job_id>-w<chunk>``); the running state fails, its Catch runs cleanup, which sets
CANCELLED, and the execution ends in ``JobCancelled``. A cancel during the endpoint wait finds
no Batch job to stop: the workers that start afterwards see the request and exit at once, and
finalize raises JobCancelledError, so cleanup still ends the job CANCELLED. A stopped execution
is cleaned up by the EventBridge rule above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spotbot.core import envnames
from spotbot.core.limits import DEFAULT_LIMITS, JobLimits, plan_chunks
from workflows import asl

# --- state names -------------------------------------------------------------------------
INIT_JOB = "InitJob"
REQUEUE_TASKS = "RequeueTasks"
PREPARE = "Prepare"
PREPARE_RETRY = "PrepareRetry"
START_SCAN = "StartScan"
SCAN_ASSETS = "ScanAssets"
SCAN_MORE = "ScanMore?"
SCAN_DONE = "ScanDone"
SCAN_FAILED = "ScanFailed"
ENDPOINT_MODE = "EndpointMode?"
NO_ENDPOINT = "NoEndpoint"
ENSURE_ENDPOINT = "EnsureEndpoint"
ENDPOINT_READY_NOW = "EndpointReady?"
START_ENDPOINT_POLLS = "StartEndpointPolls"
WAIT_FOR_ENDPOINT = "WaitForEndpoint"
DESCRIBE_ENDPOINT = "DescribeEndpoint"
ENDPOINT_STATUS = "EndpointStatus?"
COUNT_ENDPOINT_POLL = "CountEndpointPoll"
ENDPOINT_READY = "EndpointReady"
ENDPOINT_FAILED = "EndpointFailed"
ENDPOINT_TIMED_OUT = "EndpointTimedOut"
ENDPOINT_STEP_FAILED = "EndpointStepFailed"
ANY_ASSETS = "AnyAssets?"
NO_WORKERS = "NoWorkers"
RUN_WORKERS = "RunWorkers"
SUBMIT_ARRAY = "SubmitWorkerArray"
WORKER_ARRAY_FAILED = "WorkerArrayFailed"
FINALIZE_JOB = "FinalizeJob"
RECORD_OUTCOME = "RecordOutcome"
RECORD_FAILURE = "RecordFailure"
CLEANUP_JOB = "CleanupJob"
JOB_FINISHED = "JobFinished?"
JOB_SUCCEEDED = "JobSucceeded"
JOB_CANCELLED = "JobCancelled"
JOB_FAILED = "JobFailed"
CLEANUP_FAILED = "CleanupFailed"

#: Endpoint statuses from which InService will not come without a new endpoint.
ENDPOINT_DEAD_STATUSES = (
    "Failed",
    "OutOfService",
    "Deleting",
    "RollingBack",
    "UpdateRollbackFailed",
)

#: Step Functions' payload limit is 256 KB; spotbot keeps every state's data under this.
STATE_PAYLOAD_BUDGET = 32 * 1024


@dataclass(frozen=True)
class TaggingRefs:
    """Everything the machines refer to: ARNs and names as plain strings, limits as numbers."""

    partition: str
    init_function_arn: str
    scan_function_arn: str
    endpoint_function_arn: str
    finalize_function_arn: str
    cleanup_function_arn: str
    requeue_function_arn: str
    job_queue_arn: str
    job_definition_arns: Mapping[str, str] = field(default_factory=dict, hash=False)
    max_array_size: int = DEFAULT_LIMITS.max_array_size
    max_shards: int = DEFAULT_LIMITS.max_shards
    default_shards: int = DEFAULT_LIMITS.default_shards
    max_concurrent_arrays: int = 4
    endpoint_poll_seconds: int = DEFAULT_LIMITS.default_poll_seconds
    max_endpoint_polls: int = 120
    default_max_failure_pct: float = DEFAULT_LIMITS.default_max_failure_pct
    scan_budget_seconds: int = 600
    scan_timeout_seconds: int = 960
    lambda_timeout_seconds: int = 360
    describe_timeout_seconds: int = 60
    work_timeout_seconds: int = 172_800

    def __post_init__(self) -> None:
        self.limits()  # the limits' own rules (JobLimits) raise ValueError
        if self.scan_budget_seconds >= self.scan_timeout_seconds:
            raise ValueError("scan_budget_seconds must leave room before scan_timeout_seconds")
        if not self.job_definition_arns:
            raise ValueError("at least one bot job definition is required")

    def limits(self) -> JobLimits:
        """The job limits these refs hand to the init and requeue functions."""
        return JobLimits(
            default_shards=self.default_shards,
            max_shards=self.max_shards,
            max_array_size=self.max_array_size,
            default_poll_seconds=self.endpoint_poll_seconds,
            default_max_failure_pct=self.default_max_failure_pct,
        )


# --- shared policies ---------------------------------------------------------------------
def lambda_retry() -> list[asl.State]:
    """The one retry policy of every Lambda task: service errors, throttling, a lost call."""
    return [
        asl.retry(
            asl.LAMBDA_TRANSIENT_ERRORS,
            interval_seconds=2,
            max_attempts=6,
            backoff_rate=2.0,
            max_delay_seconds=60,
            jitter=True,
        ),
        # Handlers are idempotent (task ids derive from job id and key), so one re-run is safe.
        asl.retry([asl.TIMEOUT], interval_seconds=5, max_attempts=1),
    ]


def sdk_retry() -> list[asl.State]:
    """Retry for the SageMaker SDK call: throttling and server-side errors only."""
    return [
        asl.retry(
            ["SageMaker.ThrottlingException", "SageMaker.AmazonSageMakerException", asl.TIMEOUT],
            interval_seconds=2,
            max_attempts=5,
            backoff_rate=2.0,
            max_delay_seconds=30,
            jitter=True,
        )
    ]


def batch_retry() -> list[asl.State]:
    """Retry submitting to Batch on service errors; never resubmit a job that ran and failed."""
    return [
        asl.retry(
            ["Batch.AWSBatchException", "Batch.ServerException", "Batch.TooManyRequestsException"],
            interval_seconds=5,
            max_attempts=4,
            backoff_rate=2.0,
            max_delay_seconds=60,
            jitter=True,
        )
    ]


def _to_failure() -> list[asl.State]:
    return [asl.catch(RECORD_FAILURE)]


# --- pieces shared by both machines -----------------------------------------------------
def _job_request_payload(refs: TaggingRefs) -> dict[str, Any]:
    limits = refs.limits()
    return {
        "request.$": "$$.Execution.Input",
        "execution_name.$": "$$.Execution.Name",
        "job_definitions": dict(refs.job_definition_arns),
        "limits": {
            "default_shards": limits.default_shards,
            "max_shards": limits.max_shards,
            "max_array_size": limits.max_array_size,
            "default_poll_seconds": limits.default_poll_seconds,
            "default_max_failure_pct": float(limits.default_max_failure_pct),
        },
    }


_JOB_SELECTOR = {
    "job_id.$": "$.Payload.job_id",
    "bot.$": "$.Payload.bot",
    "model_version.$": "$.Payload.model_version",
    "inference.$": "$.Payload.inference",
    "job_definition.$": "$.Payload.job_definition",
    "shards.$": "$.Payload.shards",
    "chunks.$": "$.Payload.chunks",
    "max_failure_pct.$": "$.Payload.max_failure_pct",
    "poll_seconds.$": "$.Payload.poll_seconds",
}


#: What a re-raising Fail state reports as its cause: the caught {"Error", "Cause"}, whole.
RERAISED_CAUSE = "States.JsonToString($.error)"


def _reraise(error: str) -> asl.State:
    """Inside a branch: fail the branch so the outer Catch sees it, the caught error inside.

    The name is ours, not the caught one's: states may not report names that begin with
    "States." (a caught States.TaskFailed or States.Timeout re-raised by ErrorPath ends the
    execution in States.Runtime, past every Catch), and "$.error.Cause" may be absent.
    """
    return asl.fail(error=error, cause_path=RERAISED_CAUSE)


def _endpoint_states(refs: TaggingRefs) -> dict[str, asl.State]:
    in_branch_catch = [asl.catch(ENDPOINT_STEP_FAILED)]
    return {
        ENDPOINT_MODE: asl.choice(
            [asl.when("$.job.inference", "StringEquals", "endpoint", ENSURE_ENDPOINT)],
            default=NO_ENDPOINT,
        ),
        NO_ENDPOINT: asl.pass_state(
            result={"endpoint_name": "", "created": False, "status": "None"},
            result_path="$.endpoint",
            comment="in-container inference: workers load the model themselves",
        ),
        ENSURE_ENDPOINT: asl.lambda_invoke(
            refs.partition,
            refs.endpoint_function_arn,
            {
                "job_id.$": "$.job.job_id",
                "bot.$": "$.job.bot",
                "model_version.$": "$.job.model_version",
            },
            result_selector={
                "endpoint_name.$": "$.Payload.endpoint_name",
                "created.$": "$.Payload.created",
                "status.$": "$.Payload.status",
            },
            result_path="$.endpoint",
            timeout_seconds=refs.lambda_timeout_seconds,
            retry_policy=lambda_retry(),
            catchers=in_branch_catch,
            next_state=ENDPOINT_READY_NOW,
            comment="create or reuse the endpoint; never waits",
        ),
        ENDPOINT_READY_NOW: asl.choice(
            [asl.when("$.endpoint.status", "StringEquals", "InService", ENDPOINT_READY)],
            default=START_ENDPOINT_POLLS,
        ),
        START_ENDPOINT_POLLS: asl.pass_state(
            result={"count": 0}, result_path="$.polls", next_state=WAIT_FOR_ENDPOINT
        ),
        WAIT_FOR_ENDPOINT: asl.wait_seconds_path("$.job.poll_seconds", DESCRIBE_ENDPOINT),
        DESCRIBE_ENDPOINT: asl.task(
            asl.integration_arn(refs.partition, "aws-sdk:sagemaker", "describeEndpoint"),
            parameters={"EndpointName.$": "$.endpoint.endpoint_name"},
            result_selector={"status.$": "$.EndpointStatus"},
            result_path="$.describe",
            timeout_seconds=refs.describe_timeout_seconds,
            retry_policy=sdk_retry(),
            catchers=in_branch_catch,
            next_state=ENDPOINT_STATUS,
        ),
        ENDPOINT_STATUS: asl.choice(
            [
                asl.when("$.describe.status", "StringEquals", "InService", ENDPOINT_READY),
                *[
                    asl.when("$.describe.status", "StringEquals", s, ENDPOINT_FAILED)
                    for s in ENDPOINT_DEAD_STATUSES
                ],
                asl.when(
                    "$.polls.count",
                    "NumericGreaterThanEquals",
                    refs.max_endpoint_polls,
                    ENDPOINT_TIMED_OUT,
                ),
            ],
            default=COUNT_ENDPOINT_POLL,
        ),
        COUNT_ENDPOINT_POLL: asl.pass_state(
            parameters={"count.$": "States.MathAdd($.polls.count, 1)"},
            result_path="$.polls",
            next_state=WAIT_FOR_ENDPOINT,
        ),
        ENDPOINT_READY: asl.pass_state(comment="InService"),
        ENDPOINT_FAILED: asl.fail(
            error="Spotbot.EndpointFailed",
            cause="The SageMaker endpoint did not reach InService (see its FailureReason).",
        ),
        ENDPOINT_TIMED_OUT: asl.fail(
            error="Spotbot.EndpointTimedOut",
            cause="The SageMaker endpoint was not InService after the maximum number of polls.",
        ),
        ENDPOINT_STEP_FAILED: _reraise("Spotbot.EndpointStepFailed"),
    }


def _work_and_finish_states(refs: TaggingRefs) -> dict[str, asl.State]:
    """RunWorkers -> FinalizeJob -> RecordOutcome -> CleanupJob -> end, plus RecordFailure."""
    env = [
        (envnames.JOB_ID, "$.job_id"),
        (envnames.BOT, "$.bot"),
        (envnames.MODEL_VERSION, "$.model_version"),
        (envnames.INFERENCE, "$.inference"),
        (envnames.ENDPOINT_NAME, "$.endpoint_name"),
        (envnames.SHARD_OFFSET, "States.Format('{}', $.chunk.offset)"),
    ]
    submit = asl.batch_submit_sync(
        refs.partition,
        job_queue=refs.job_queue_arn,
        job_name_path="States.Format('{}-w{}', $.job_id, $.chunk.index)",
        job_definition_path="$.job_definition",
        array_size_path="$.chunk.size",
        environment=env,
        result_selector={"batch_job_id.$": "$.JobId", "status.$": "$.Status"},
        timeout_seconds=refs.work_timeout_seconds,
        retry_policy=batch_retry(),
        catchers=[asl.catch(WORKER_ARRAY_FAILED)],
        comment="one Batch array job per chunk; a child's shard = offset + array index",
    )
    return {
        RUN_WORKERS: {
            "Type": "Map",
            "Comment": "the chunks of the shard range, at most max_array_size children each",
            "ItemsPath": "$.job.chunks",
            "ItemSelector": {
                "job_id.$": "$.job.job_id",
                "bot.$": "$.job.bot",
                "model_version.$": "$.job.model_version",
                "inference.$": "$.job.inference",
                "job_definition.$": "$.job.job_definition",
                "endpoint_name.$": "$.prepare.endpoint_name",
                "chunk.$": "$$.Map.Item.Value",
            },
            "MaxConcurrency": refs.max_concurrent_arrays,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                **asl.machine(
                    SUBMIT_ARRAY,
                    {
                        SUBMIT_ARRAY: submit,
                        WORKER_ARRAY_FAILED: _reraise("Spotbot.WorkerArrayFailed"),
                    },
                ),
            },
            "ResultPath": "$.work",
            "Catch": _to_failure(),
            "Next": FINALIZE_JOB,
        },
        NO_WORKERS: asl.pass_state(
            result=[],
            result_path="$.work",
            next_state=FINALIZE_JOB,
            comment="nothing the bot accepts: finalize an empty job",
        ),
        FINALIZE_JOB: asl.lambda_invoke(
            refs.partition,
            refs.finalize_function_arn,
            {
                "job_id.$": "$.job.job_id",
                "max_failure_pct.$": "$.job.max_failure_pct",
                "workers.$": "$.work",
            },
            result_selector={
                "status.$": "$.Payload.status",
                "error.$": "$.Payload.error",
                "cause.$": "$.Payload.cause",
                "counts.$": "$.Payload.counts",
                "failed_pct.$": "$.Payload.failed_pct",
                "summary_uri.$": "$.Payload.summary_uri",
            },
            result_path="$.finalize",
            timeout_seconds=refs.lambda_timeout_seconds,
            retry_policy=lambda_retry(),
            catchers=_to_failure(),
            next_state=RECORD_OUTCOME,
        ),
        RECORD_OUTCOME: asl.pass_state(
            parameters={
                "status.$": "$.finalize.status",
                "failure": {"Error.$": "$.finalize.error", "Cause.$": "$.finalize.cause"},
            },
            result_path="$.outcome",
            next_state=CLEANUP_JOB,
        ),
        RECORD_FAILURE: asl.pass_state(
            parameters={"status": "FAILED", "failure.$": "$.error"},
            result_path="$.outcome",
            next_state=CLEANUP_JOB,
            comment="every Catch comes here, so cleanup runs on every failure path",
        ),
        CLEANUP_JOB: asl.lambda_invoke(
            refs.partition,
            refs.cleanup_function_arn,
            {
                "request.$": "$$.Execution.Input",
                "execution_name.$": "$$.Execution.Name",
                "outcome.$": "$.outcome",
            },
            result_selector={
                "job_id.$": "$.Payload.job_id",
                "status.$": "$.Payload.status",
                "error.$": "$.Payload.error",
                "cause.$": "$.Payload.cause",
                "endpoint_deleted.$": "$.Payload.endpoint_deleted",
            },
            result_path="$.cleanup",
            timeout_seconds=refs.lambda_timeout_seconds,
            retry_policy=lambda_retry(),
            # Cleanup cannot clean up after itself: fail loudly so an alarm sees it.
            catchers=[asl.catch(CLEANUP_FAILED)],
            next_state=JOB_FINISHED,
        ),
        JOB_FINISHED: asl.choice(
            [
                asl.when("$.cleanup.status", "StringEquals", "SUCCEEDED", JOB_SUCCEEDED),
                asl.when("$.cleanup.status", "StringEquals", "CANCELLED", JOB_CANCELLED),
            ],
            default=JOB_FAILED,
        ),
        JOB_SUCCEEDED: asl.succeed(),
        JOB_CANCELLED: asl.fail(error="Spotbot.JobCancelled", cause="The job was cancelled."),
        JOB_FAILED: asl.fail(error_path="$.cleanup.error", cause_path="$.cleanup.cause"),
        CLEANUP_FAILED: asl.fail(
            error="Spotbot.CleanupFailed",
            cause="Cleanup failed after retries: the job's endpoint or Batch jobs may still be "
            "running; run the cleanup function for this job by hand.",
        ),
    }


def _any_assets_choice() -> asl.State:
    return asl.choice(
        [asl.when("$.prepare.scan.accepted", "NumericGreaterThan", 0, RUN_WORKERS)],
        default=NO_WORKERS,
    )


# --- the machines -----------------------------------------------------------------------
def build_definition(refs: TaggingRefs) -> dict[str, Any]:
    """The tagging machine: init, scan || endpoint, Batch arrays, finalize, cleanup."""
    scan_branch = asl.machine(
        START_SCAN,
        {
            START_SCAN: asl.pass_state(
                result={
                    "done": False,
                    "continuation_token": None,
                    "pages": 0,
                    "scanned": 0,
                    "accepted": 0,
                },
                result_path="$.scan",
                next_state=SCAN_ASSETS,
            ),
            SCAN_ASSETS: asl.lambda_invoke(
                refs.partition,
                refs.scan_function_arn,
                {
                    "job_id.$": "$.job.job_id",
                    "budget_seconds": refs.scan_budget_seconds,
                    "cursor.$": "$.scan",
                },
                result_selector={
                    "done.$": "$.Payload.done",
                    "continuation_token.$": "$.Payload.continuation_token",
                    "pages.$": "$.Payload.pages",
                    "scanned.$": "$.Payload.scanned",
                    "accepted.$": "$.Payload.accepted",
                },
                result_path="$.scan",
                timeout_seconds=refs.scan_timeout_seconds,
                retry_policy=lambda_retry(),
                catchers=[asl.catch(SCAN_FAILED)],
                next_state=SCAN_MORE,
                comment="lists pages until its time budget, then hands the token back",
            ),
            SCAN_MORE: asl.choice(
                [asl.when("$.scan.done", "BooleanEquals", False, SCAN_ASSETS)], default=SCAN_DONE
            ),
            # The branch's output is the cursor itself, read as "$[0]" by Prepare: moto's
            # JSONPath gives "$[0].scan" as a one-item list (AWS gives the object).
            SCAN_DONE: {**asl.pass_state(), "OutputPath": "$.scan"},
            SCAN_FAILED: _reraise("Spotbot.ScanFailed"),
        },
    )
    states: dict[str, asl.State] = {
        INIT_JOB: asl.lambda_invoke(
            refs.partition,
            refs.init_function_arn,
            _job_request_payload(refs),
            result_selector=_JOB_SELECTOR,
            result_path="$.job",
            timeout_seconds=refs.lambda_timeout_seconds,
            retry_policy=lambda_retry(),
            catchers=_to_failure(),
            next_state=PREPARE,
        ),
        PREPARE: {
            "Type": "Parallel",
            "Comment": "scan the source while the endpoint (if any) comes up",
            "Branches": [scan_branch, asl.machine(ENDPOINT_MODE, _endpoint_states(refs))],
            "ResultSelector": {
                "scan.$": "$[0]",
                "endpoint_name.$": "$[1].endpoint.endpoint_name",
            },
            "ResultPath": "$.prepare",
            "Catch": _to_failure(),
            "Next": ANY_ASSETS,
        },
        ANY_ASSETS: _any_assets_choice(),
        **_work_and_finish_states(refs),
    }
    return asl.machine(
        INIT_JOB,
        states,
        comment="spotbot tagging job: scan, run the bot on Batch Spot arrays, finalize, clean up",
    )


def build_retry_definition(refs: TaggingRefs) -> dict[str, Any]:
    """The retry machine: requeue unfinished tasks, bring the endpoint back, rerun workers."""
    states: dict[str, asl.State] = {
        REQUEUE_TASKS: asl.lambda_invoke(
            refs.partition,
            refs.requeue_function_arn,
            _job_request_payload(refs),
            result_selector={**_JOB_SELECTOR, "requeued.$": "$.Payload.requeued"},
            result_path="$.job",
            timeout_seconds=refs.lambda_timeout_seconds,
            retry_policy=lambda_retry(),
            catchers=_to_failure(),
            next_state=PREPARE_RETRY,
        ),
        PREPARE_RETRY: {
            "Type": "Parallel",
            "Comment": "the endpoint was deleted by the first run's cleanup: bring it back",
            "Branches": [asl.machine(ENDPOINT_MODE, _endpoint_states(refs))],
            "ResultSelector": {
                "scan": {"accepted.$": "$[0].job.requeued"},
                "endpoint_name.$": "$[0].endpoint.endpoint_name",
            },
            "ResultPath": "$.prepare",
            "Catch": _to_failure(),
            "Next": ANY_ASSETS,
        },
        ANY_ASSETS: _any_assets_choice(),
        **_work_and_finish_states(refs),
    }
    return asl.machine(
        REQUEUE_TASKS,
        states,
        comment="spotbot retry: requeue a job's failed tasks, run the workers again, finalize",
    )


# --- the payload budget, on paper ---------------------------------------------------------
def payload_bytes(value: Any) -> int:
    """Size of a value as Step Functions counts it: UTF-8 JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def worst_case_state_data(refs: TaggingRefs, shards: int, assets: int) -> dict[str, Any]:
    """The largest data any state holds for a job, built from the contract above.

    Every string field is filled to its largest plausible length (S3 keys 1,024 bytes, tokens
    1,024, ids 128, causes 1,000) and every count is ``assets``: the asset count only changes
    the digits of a few numbers, the shard count only the length of ``chunks``.
    """
    long = "x" * 128
    request = {
        "job_id": long,
        "bot": long,
        "source": "s3://" + "s" * 1024,
        "output": "s3://" + "o" * 1024,
        "shards": shards,
        "model_version": long,
        "inference": "in-container",
        "max_failure_pct": 100.0,
        "poll_seconds": refs.endpoint_poll_seconds,
    }
    chunks = plan_chunks(shards, refs.max_array_size)
    job: dict[str, Any] = {
        "job_id": long,
        "bot": long,
        "model_version": long,
        "inference": "in-container",
        "job_definition": "arn:" + "j" * 256,
        "shards": shards,
        "chunks": chunks,
        "max_failure_pct": 100.0,
        "poll_seconds": refs.endpoint_poll_seconds,
        "requeued": assets,
    }
    counts = {k: assets for k in ("total", "done", "failed", "skipped", "pending", "running")}
    scan = {
        "done": True,
        "continuation_token": "t" * 1024,
        "pages": assets // 1000 + 1,
        "scanned": assets,
        "accepted": assets,
    }
    work = [{"batch_job_id": "b" * 64, "status": "SUCCEEDED"} for _ in chunks]
    return {
        **request,
        "job": job,
        "prepare": {"scan": scan, "endpoint_name": "e" * 63},
        "work": work,
        "finalize": {
            "status": "FAILED",
            "error": "Spotbot.FailureThresholdExceeded",
            "cause": "c" * 1000,
            "counts": counts,
            "failed_pct": 100.0,
            "summary_uri": "s3://" + "o" * 1024,
        },
        "outcome": {"status": "FAILED", "failure": {"Error": long, "Cause": "c" * 1000}},
        "cleanup": {
            "job_id": long,
            "status": "FAILED",
            "error": long,
            "cause": "c" * 1000,
            "endpoint_deleted": True,
        },
    }


def max_shards_within_budget(refs: TaggingRefs, budget: int = STATE_PAYLOAD_BUDGET) -> int:
    """The largest shard count whose worst-case state data stays within ``budget`` bytes."""
    low, high = 2, 10_000_000
    while low < high:
        mid = (low + high + 1) // 2
        if payload_bytes(worst_case_state_data(refs, mid, 10**9)) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
