"""Step Functions and Batch: the only place the job logic meets their APIs.

Each adapter takes a client (so tests hand in moto's) and turns AWS errors into spotbot's own:
a missing execution is ``None``, an existing one is reported, anything else is
:class:`CloudServiceError` with the service's error code, raised from the original.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from spotbot.aws.clients import aws_errors, error_code
from spotbot.core.errors import CloudServiceError

#: Batch job statuses from which a job can still run (and cost money).
ACTIVE_BATCH_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN StartExecution gives an execution of that name (so it can be described by job id)."""
    head, marker, machine = state_machine_arn.rpartition(":stateMachine:")
    if not marker:
        raise ValueError(f"not a state machine ARN: {state_machine_arn}")
    return f"{head}:execution:{machine}:{name}"


@dataclass(frozen=True, slots=True)
class Execution:
    arn: str
    name: str
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED | PENDING_REDRIVE
    input: dict[str, Any]
    start_date: str | None = None
    stop_date: str | None = None
    error: str | None = None
    cause: str | None = None


class StepFunctions:
    """StartExecution (idempotent by name) and DescribeExecution."""

    def __init__(self, client: Any):
        self.client = client

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> tuple[str, bool]:
        """Start `name`; (execution ARN, True) when started now, (ARN, False) when it already was.

        Step Functions answers a repeated StartExecution with the same name and input like the
        first one while the execution runs, and ExecutionAlreadyExists otherwise: both mean the
        job exists, which is what a client retrying with its token wants to hear.
        """
        from botocore.exceptions import ClientError

        arn = execution_arn(state_machine_arn, name)
        # A repeated StartExecution while the first runs returns the first's answer unchanged,
        # so "did this call start it" is only knowable by looking first.
        if self.describe(arn) is not None:
            return arn, False
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        try:
            started = self.client.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=body
            )
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return arn, False
            raise CloudServiceError(f"could not start execution {name}: {error_code(exc)}") from exc
        return str(started["executionArn"]), True

    def describe(self, arn: str) -> Execution | None:
        from botocore.exceptions import ClientError

        try:
            found = self.client.describe_execution(executionArn=arn)
        except ClientError as exc:
            if error_code(exc) in ("ExecutionDoesNotExist", "StateMachineDoesNotExist"):
                return None
            raise CloudServiceError(f"could not describe execution: {error_code(exc)}") from exc
        try:
            payload = json.loads(found.get("input") or "{}")
        except json.JSONDecodeError:
            payload = {}
        return Execution(
            arn=arn,
            name=str(found.get("name", arn.rsplit(":", 1)[-1])),
            status=str(found["status"]),
            input=payload if isinstance(payload, dict) else {},
            start_date=_iso(found.get("startDate")),
            stop_date=_iso(found.get("stopDate")),
            error=found.get("error"),
            cause=found.get("cause"),
        )


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value else None)


@dataclass(frozen=True, slots=True)
class BatchJob:
    job_id: str
    name: str
    status: str


class BatchJobs:
    """The Batch jobs of one queue: find a spotbot job's worker arrays by name, terminate them."""

    def __init__(self, client: Any, queue_arn: str):
        self.client = client
        self.queue_arn = queue_arn

    def active(self, name_prefix: str) -> list[BatchJob]:
        """Jobs named `name_prefix`* that may still run (array parents; children follow them)."""
        found: dict[str, BatchJob] = {}
        with aws_errors(f"list Batch jobs {name_prefix}*"):
            paginator = self.client.get_paginator("list_jobs")
            # A JOB_NAME filter lists jobs of every status; filter the active ones here.
            pages = paginator.paginate(
                jobQueue=self.queue_arn,
                filters=[{"name": "JOB_NAME", "values": [f"{name_prefix}*"]}],
            )
            for page in pages:
                for summary in page.get("jobSummaryList", []):
                    name = str(summary.get("jobName", ""))
                    status = str(summary.get("status", ""))
                    if name.startswith(name_prefix) and status in ACTIVE_BATCH_STATUSES:
                        found[summary["jobId"]] = BatchJob(summary["jobId"], name, status)
        return sorted(found.values(), key=lambda j: j.name)

    def terminate(self, jobs: list[BatchJob], reason: str) -> int:
        """Terminate each job (Batch cancels queued ones and stops running ones); return how many."""
        with aws_errors("terminate Batch jobs"):
            for job in jobs:
                self.client.terminate_job(jobId=job.job_id, reason=reason[:255])
        return len(jobs)

    def terminate_workers(self, job_id: str, reason: str) -> int:
        """Terminate the worker arrays of a spotbot job: they are named ``<job_id>-w<chunk>``."""
        return self.terminate(self.active(f"{job_id}-w"), reason)
