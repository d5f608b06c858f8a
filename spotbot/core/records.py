"""The core records of spotbot: jobs, tasks, results and their statuses."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class JobStatus(StrEnum):
    CREATED = "CREATED"
    SCANNING = "SCANNING"
    RUNNING = "RUNNING"
    FINALIZING = "FINALIZING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"  # stopped at its budget; resume or retry goes on

    @property
    def is_final(self) -> bool:
        return self in (
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.BUDGET_EXCEEDED,
        )


FINAL_TASK_STATUSES = frozenset({TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.SKIPPED})


def utcnow() -> str:
    """An ISO-8601 UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    """A job id that sorts by creation time and is safe in paths, S3 keys and execution names."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"job-{stamp}-{secrets.token_hex(4)}"


def task_id(job_id: str, key: str) -> str:
    """The id of the task for `key` within `job_id`: the same pair always gives the same id."""
    digest = hashlib.sha256(f"{job_id}\x00{key}".encode()).hexdigest()
    return digest[:32]


def shard_of(key: str, shards: int) -> int:
    """The shard a key belongs to, stable across scans and independent of listing order."""
    if shards <= 1:
        return 0
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


# json.dumps(..., ensure_ascii=False) builds an encoder per call: one, made once, writes lines.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False)

#: The result field naming the job whose result an only-new job carried over.
REUSED_FROM = "reused_from"

# The job option the cloud API sets on DELETE /jobs/{id}: the time the cancel was asked for.
CANCEL_REQUESTED = "cancel_requested_at"


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What a job records beside its columns, typed. It is stored as a JSON object
    (`Job.options`, so older records and other writers' keys survive); read it as `job.opts`."""

    bot_spec: str | None = None  # what the job asked for: a registered name or module:Class
    model_path: str | None = None  # the model folder a local job loads (None: built-in or S3)
    model_origin: str = ""  # where the model comes from: a folder, a registry URI, built-in
    max_asset_bytes: int | None = None
    # One result object per asset beside results.jsonl (in S3, a PUT each): off by default.
    per_asset_results: bool | None = None
    inference: str | None = None  # cloud: "endpoint" | "in-container"
    endpoint_name: str | None = None  # cloud, endpoint mode
    poll_seconds: int | None = None  # cloud: the endpoint wait's polling interval
    cancel_requested_at: str | None = None
    retry_executions: tuple[str, ...] = ()  # cloud: the retry state machine's executions
    # Reuse the DONE results of earlier jobs (same bot and model version) for unchanged assets.
    only_new: bool | None = None
    budget_usd: float | None = None  # workers stop claiming before spend passes it
    vcpu_hour_usd: float | None = None  # what a vCPU-hour of the job's machines costs

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobOptions:
        known = {k: data[k] for k in cls.__dataclass_fields__ if data.get(k) is not None}
        if "retry_executions" in known:
            known["retry_executions"] = tuple(known["retry_executions"])
        if "max_asset_bytes" in known:
            known["max_asset_bytes"] = int(known["max_asset_bytes"])
        if "poll_seconds" in known:
            known["poll_seconds"] = int(known["poll_seconds"])
        for name in ("budget_usd", "vcpu_hour_usd"):
            if name in known:
                known[name] = float(known[name])
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: keys with a value only."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["retry_executions"] = list(self.retry_executions)
        return {k: v for k, v in data.items() if v not in (None, "", [])}


@dataclass(slots=True)
class Job:
    id: str
    bot: str
    source: str
    output: str
    shards: int = 1
    model_version: str | None = None
    status: JobStatus = JobStatus.CREATED
    max_failure_pct: float = 100.0
    created_at: str = field(default_factory=utcnow)
    started_at: str | None = None
    finished_at: str | None = None
    scan_complete: bool = False
    scan_token: str | None = None
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @property
    def opts(self) -> JobOptions:
        """The job's options, typed."""
        return JobOptions.from_dict(self.options)

    @property
    def cancel_requested(self) -> bool:
        return bool(self.opts.cancel_requested_at)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["status"] = JobStatus(known.get("status", JobStatus.CREATED))
        return cls(**known)


@dataclass(slots=True)
class Task:
    job_id: str
    key: str
    shard: int = 0
    size: int | None = None
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    error: str | None = None
    worker: str | None = None
    fingerprint: str | None = None  # the asset's ETag (S3) or mtime and size (a folder)

    @property
    def id(self) -> str:
        return task_id(self.job_id, self.key)


@dataclass(slots=True)
class Result:
    """What a bot made of one asset (or why it could not), as written to the output and index."""

    job_id: str
    key: str
    bot: str
    model_version: str | None
    status: TaskStatus
    tags: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # When the store recorded the outcome (for throughput over time); not part of the record.
    finished_at: str | None = None

    @property
    def task_id(self) -> str:
        return task_id(self.job_id, self.key)

    @property
    def labels(self) -> list[str]:
        return [str(t.get("label", "")) for t in self.tags]

    @property
    def reused_from(self) -> str | None:
        """The earlier job whose result this is (an only-new job's unchanged asset)."""
        value = self.extra.get(REUSED_FROM)
        return value if isinstance(value, str) else None

    @property
    def text(self) -> str:
        value = self.extra.get("text")
        return value if isinstance(value, str) else ""

    def to_record(self) -> dict[str, Any]:
        """The JSON line for results.jsonl and the per-asset result object."""
        record: dict[str, Any] = {
            "key": self.key,
            "status": str(self.status),
            "bot": self.bot,
            "model_version": self.model_version,
            "tags": self.tags,
        }
        record.update(self.extra)
        record["error"] = self.error
        return record

    def to_json(self) -> str:
        """The record as the text of one line of results.jsonl."""
        return _LINE_ENCODER.encode(self.to_record())

    def to_line(self) -> bytes:
        """The record as one line of results.jsonl (what the stores keep, byte for byte)."""
        return self.to_json().encode()

    @classmethod
    def from_record(cls, job_id: str, record: dict[str, Any]) -> Result:
        base = {"key", "status", "bot", "model_version", "tags", "error"}
        return cls(
            job_id=job_id,
            key=record["key"],
            bot=record.get("bot", ""),
            model_version=record.get("model_version"),
            status=TaskStatus(record["status"]),
            tags=list(record.get("tags") or []),
            extra={k: v for k, v in record.items() if k not in base},
            error=record.get("error"),
        )
