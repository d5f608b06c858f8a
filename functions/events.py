"""Input models of the Step-Functions-invoked functions: the payload contract of workflows/tagging.py.

A malformed event raises pydantic's ValidationError, whose class name the state machine sees
as the error name: a bug in the machine's Parameters fails loudly, never half-runs a step.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spotbot.core.limits import DEFAULT_LIMITS, JobLimits


class _Event(BaseModel):
    # Extra fields are ignored: the machine may pass more than a function reads.
    model_config = ConfigDict(extra="ignore")


class LimitsModel(_Event):
    """The machine's ``limits``; defaults and rules are JobLimits' (spotbot.core.limits)."""

    default_shards: int = DEFAULT_LIMITS.default_shards
    max_shards: int = DEFAULT_LIMITS.max_shards
    max_array_size: int = DEFAULT_LIMITS.max_array_size
    default_poll_seconds: int = DEFAULT_LIMITS.default_poll_seconds
    default_max_failure_pct: float = DEFAULT_LIMITS.default_max_failure_pct

    @model_validator(mode="after")
    def _limits_rules(self) -> LimitsModel:
        self.to_limits()  # JobLimits' ValueError becomes pydantic's ValidationError
        return self

    def to_limits(self) -> JobLimits:
        return JobLimits(**self.model_dump())


class JobRequestEvent(_Event):
    """The execution input as init and requeue receive it (requeue: only job_id and options)."""

    job_id: str | None = Field(default=None, min_length=1, max_length=80)
    bot: str | None = None
    source: str | None = None
    output: str | None = None
    shards: int | None = Field(default=None, ge=1)
    model_version: str | None = None
    inference: Literal["endpoint", "in-container"] | None = None
    max_failure_pct: float | None = Field(default=None, ge=0, le=100)
    poll_seconds: int | None = Field(default=None, ge=0)
    only_new: bool | None = None
    incremental: bool | None = None  # the same as only_new
    budget_usd: float | None = Field(default=None, gt=0)
    per_asset_results: bool | None = None
    min_failure_sample: int | None = Field(default=None, ge=1)


class InitEvent(_Event):
    request: JobRequestEvent
    execution_name: str = Field(min_length=1)
    job_definitions: dict[str, str] = Field(default_factory=dict)
    limits: LimitsModel = Field(default_factory=LimitsModel)

    @property
    def job_id(self) -> str:
        return self.request.job_id or self.execution_name


class ScanCursor(_Event):
    done: bool = False
    continuation_token: str | None = None
    pages: int = 0
    scanned: int = 0
    accepted: int = 0


class ScanEvent(_Event):
    job_id: str = Field(min_length=1)
    budget_seconds: float = Field(default=600, gt=0)
    cursor: ScanCursor = Field(default_factory=ScanCursor)
    #: Not in the machine's payload: a cap on pages per call, for tests and tuning.
    max_pages: int | None = Field(default=None, ge=1)


class EndpointEvent(_Event):
    job_id: str = Field(min_length=1)
    bot: str = Field(min_length=1)
    model_version: str = Field(min_length=1)


class WorkerResult(_Event):
    batch_job_id: str | None = None
    status: str | None = None


class FinalizeEvent(_Event):
    job_id: str = Field(min_length=1)
    max_failure_pct: float | None = Field(default=None, ge=0, le=100)
    workers: list[WorkerResult] = Field(default_factory=list)


class Failure(_Event):
    Error: str | None = None
    Cause: str | None = None


class Outcome(_Event):
    status: Literal["SUCCEEDED", "FAILED", "BUDGET_EXCEEDED"] = "FAILED"
    failure: Failure = Field(default_factory=Failure)


class CleanupEvent(_Event):
    """From the CleanupJob state, or an EventBridge "Step Functions Execution Status Change"."""

    request: dict[str, Any] = Field(default_factory=dict)
    execution_name: str = Field(min_length=1)
    outcome: Outcome = Field(default_factory=Outcome)

    @model_validator(mode="before")
    @classmethod
    def _from_eventbridge(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "detail" not in data or "execution_name" in data:
            return data
        detail = data.get("detail") or {}
        try:
            request = json.loads(detail.get("input") or "{}")
        except json.JSONDecodeError:
            request = {}
        status = str(detail.get("status") or "ABORTED")
        return {
            "request": request if isinstance(request, dict) else {},
            "execution_name": detail.get("name") or "",
            "outcome": {
                "status": "SUCCEEDED" if status == "SUCCEEDED" else "FAILED",
                "failure": {
                    "Error": detail.get("error") or f"States.{status.title().replace('_', '')}",
                    "Cause": detail.get("cause") or f"The execution ended {status}.",
                },
            },
        }

    @property
    def job_id(self) -> str:
        return str(self.request.get("job_id") or self.execution_name)
