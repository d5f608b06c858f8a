"""What stops a job early: too many failures after a fair sample, or a budget about to be passed.

Workers call a JobGuard after each batch. It reads the job's counts (at most every few
seconds), and when the job must stop it records why on the job (`abort_reason`), so every
other worker, local or on Batch, sees it at its next check and stops claiming too. Finalize
then ends the job FAILED or BUDGET_EXCEEDED with the results so far, and says how many assets
were left; `resume` / `retry` (with a new budget) go on from there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from spotbot.core.cost import PriceBook, default_prices, request_cost
from spotbot.core.records import Job, JobStatus, TaskStatus
from spotbot.core.store import TaskStore

#: Failures are judged only once this many assets were attempted: three broken files at the
#: start of a large job are not a reason to stop it.
MIN_FAILURE_SAMPLE = 200
#: A job may set its own sample (job option `min_failure_sample`, e.g. small for a trial run).
MIN_SAMPLE_OPTION = "min_failure_sample"
CHECK_SECONDS = 2.0
#: A Batch worker's CPU time is written to the job at most this often (and at its end).
ACCOUNT_SECONDS = 30.0
WORKER_SECONDS = "cpu_seconds."
#: The SageMaker endpoint a cloud job used: closed periods (seconds), the open one's start,
#: and the endpoint instance's price per hour.
ENDPOINT_SECONDS = "endpoint_seconds"
ENDPOINT_SINCE = "endpoint_since"
ENDPOINT_HOUR_USD = "endpoint_hour_usd"
#: S3 requests of a job over an S3 source, recorded at finalize ({"get", "put", "list"}).
REQUESTS = "requests"
#: Keys in a ListObjectsV2 page.
LIST_PAGE = 1000
#: PUTs of a job's own outputs: results.jsonl, summary.json, report.html.
OUTPUT_PUTS = 3


def _seconds_since(stamp: str, now: float) -> float:
    return max(now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp(), 0.0)


def endpoint_seconds(job: Job, now: float | None = None) -> float:
    """Seconds the job's endpoint has served it: closed periods plus the one still open."""
    opts = job.options
    seconds = float(opts.get(ENDPOINT_SECONDS) or 0.0)
    since = opts.get(ENDPOINT_SINCE)
    if since:
        seconds += _seconds_since(str(since), now or time.time())
    return seconds


def s3_requests(
    job: Job, counts: Mapping[str, int] | None = None, finalized: bool = False
) -> dict[str, int] | None:
    """The S3 requests a job over an S3 source made: a GET per attempted asset, a PUT per
    per-asset result object (and, once `finalized`, its outputs), a LIST per 1,000 listed
    objects (the scan's pages; the scan keeps no count of its own, a write in the scan would
    race the API's cancel on the job record).
    Without `counts`, what finalize recorded; None for other sources or before anything ran."""
    if not job.source.startswith("s3://"):
        return None
    if counts is None:
        recorded = job.options.get(REQUESTS)
        return {k: int(v) for k, v in recorded.items()} if isinstance(recorded, dict) else None
    done = int(counts.get("done", 0))
    per_asset = bool(job.options.get("per_asset_results"))
    made = {
        "get": done + int(counts.get("failed", 0)),
        "put": (done if per_asset else 0) + (OUTPUT_PUTS if finalized else 0),
        "list": math.ceil(int(counts.get("total", 0)) / LIST_PAGE),
    }
    return made if any(made.values()) else None


@lru_cache(maxsize=1)
def _request_prices() -> PriceBook:
    return default_prices()


def spend(
    job: Job, now: float | None = None, counts: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """What the job has cost so far, from what really ran: CPU-seconds of finished runs plus
    the run in progress (its wall time x its cores), at the job's price per vCPU-hour; the
    hours of the endpoint it used (cloud, endpoint mode) at the endpoint instance's price; and
    its S3 requests (an S3 source: from `counts` {done, failed} when given, else as recorded
    at finalize) at the shipped table's request prices."""
    opts = job.options
    now = now or time.time()
    # Local runs add to cpu_seconds; each Batch worker keeps its own cpu_seconds.<worker>.
    cpu_seconds = sum(
        float(v or 0.0)
        for k, v in opts.items()
        if k == "cpu_seconds" or k.startswith(WORKER_SECONDS)
    )
    started = opts.get("run_started_at")
    if started:
        cpu_seconds += _seconds_since(str(started), now) * int(opts.get("run_cpus") or 1)
    price = opts.get("vcpu_hour_usd")
    out: dict[str, Any] = {"cpu_hours": round(cpu_seconds / 3600.0, 6)}
    if price is not None:
        out["usd"] = round(cpu_seconds / 3600.0 * float(price), 6)
        out["vcpu_hour_usd"] = float(price)
    if opts.get(ENDPOINT_SINCE) or opts.get(ENDPOINT_SECONDS) is not None:
        hours = endpoint_seconds(job, now) / 3600.0
        out["endpoint_hours"] = round(hours, 6)
        endpoint_price = opts.get(ENDPOINT_HOUR_USD)
        if endpoint_price is not None:
            out["endpoint_usd"] = round(hours * float(endpoint_price), 6)
            out["endpoint_hour_usd"] = float(endpoint_price)
            out["usd"] = round(float(out.get("usd") or 0.0) + out["endpoint_usd"], 6)
    requests = s3_requests(job, counts)
    if requests is not None and price is not None:
        out["requests"] = requests
        out["requests_usd"] = round(request_cost(requests, _request_prices()), 6)
        out["usd"] = round(float(out.get("usd") or 0.0) + out["requests_usd"], 6)
    if opts.get("budget_usd") is not None:
        out["budget_usd"] = float(opts["budget_usd"])
    return out


def failure_abort(job: Job, done: int, failed: int, min_sample: int) -> str | None:
    """Why the job must stop for its failures, or None."""
    attempted = done + failed
    if attempted < min_sample or job.max_failure_pct >= 100:
        return None
    pct = 100.0 * failed / attempted
    if pct <= job.max_failure_pct:
        return None
    return (
        f"stopped early: {failed} of the first {attempted} assets failed ({pct:.1f}%), over"
        f" the {job.max_failure_pct:g}% allowed"
    )


def budget_abort(budget: float, spent: float, per_asset: float, in_flight: int) -> str | None:
    """Why the job must stop for its budget (spend so far + the work in flight), or None."""
    projected = spent + per_asset * in_flight
    if projected <= budget:
        return None
    return (
        f"budget reached: {_usd(spent)} spent, {_usd(projected)} with the work in flight,"
        f" over the {_usd(budget)} budget"
    )


def _usd(amount: float) -> str:
    """$1.2345, and a tiny amount in significant digits ($3.2e-07), never a bare $0.0000."""
    return f"${amount:.4f}" if amount >= 0.01 or amount == 0 else f"${amount:.2g}"


def set_options(store: TaskStore, job_id: str, **changes: Any) -> Job:
    """Set keys of the job's options, keeping the others (None removes a key)."""
    job = store.get_job(job_id)
    options = {k: v for k, v in {**job.options, **changes}.items() if v is not None}
    return store.update_job(job_id, options=options)


@dataclass
class JobGuard:
    """Called by a worker after each batch: True when the worker must stop claiming.

    `claim_size`: how many assets a worker takes at a time (the in-flight work it would add).
    `account`: (worker name, vCPUs) of a worker whose CPU time the job's spend counts, written
    as `cpu_seconds.<worker name>` (a Batch child: its instance time, not the local runner's).
    """

    store: TaskStore
    job_id: str
    claim_size: int = 256
    min_sample: int = MIN_FAILURE_SAMPLE
    every: float = CHECK_SECONDS
    reason: str | None = None
    account: tuple[str, int] | None = None
    _last: float = field(default=float("-inf"), repr=False)
    _began: float = field(default_factory=time.monotonic, repr=False)
    _accounted: float = field(default=float("-inf"), repr=False)
    _sample: int = field(default=0, repr=False)  # the job's sample, as last read
    _seen: int = field(default=0, repr=False)  # the job's attempted assets at the last check
    _mine: int = field(default=0, repr=False)  # this worker's attempted assets then

    def record_time(self, force: bool = False) -> None:
        """Write this worker's CPU time so far to the job (throttled unless `force`)."""
        now = time.monotonic()
        if self.account is None or (not force and now - self._accounted < ACCOUNT_SECONDS):
            return
        self._accounted = now
        name, vcpus = self.account
        seconds = round((now - self._began) * vcpus, 3)
        set_options(self.store, self.job_id, **{WORKER_SECONDS + name: seconds})

    def __call__(self, stats: Any = None) -> bool:
        """`stats`: the worker's ShardStats (done, failed), if it has them. Checks run every
        few seconds, and at once when this worker's own attempts since the last check are
        enough to complete the job's failure sample (a fast shard must not run past it)."""
        if self.reason is not None:
            return True
        now = time.monotonic()
        mine = int(stats.done + stats.failed) if stats is not None else None
        due = now - self._last >= self.every
        if not due and mine is not None and self._seen < self._sample:
            due = self._seen + (mine - self._mine) >= self._sample
        if not due:
            return False
        self._last = now
        self._mine = mine or 0
        self.reason = self.check()
        return self.reason is not None

    def check(self) -> str | None:
        self.record_time()
        job = self.store.get_job(self.job_id)
        if job.options.get("abort_reason"):
            return str(job.options["abort_reason"])
        counts = self.store.count_tasks(self.job_id)
        done, failed = counts[TaskStatus.DONE], counts[TaskStatus.FAILED]
        self._sample = int(job.options.get(MIN_SAMPLE_OPTION) or self.min_sample)
        self._seen = done + failed
        reason = failure_abort(job, done, failed, self._sample)
        status = JobStatus.FAILED
        budget = job.options.get("budget_usd")
        spent = spend(job, counts={"done": done, "failed": failed}).get("usd")
        if reason is None and budget is not None and spent is not None:
            tagged = max(done + failed - int(job.options.get("reused") or 0), 1)
            per_asset = float(spent) / tagged
            in_flight = counts[TaskStatus.RUNNING] + self.claim_size
            reason = budget_abort(float(budget), float(spent), per_asset, in_flight)
            status = JobStatus.BUDGET_EXCEEDED
        if reason is not None:
            set_options(self.store, self.job_id, abort_reason=reason, abort_status=str(status))
        return reason


def begin_run(store: TaskStore, job_id: str, cpus: int) -> Job:
    """A run of the job's workers starts: its CPU time counts from now."""
    from spotbot.core.records import utcnow

    return set_options(store, job_id, run_started_at=utcnow(), run_cpus=cpus)


def end_run(store: TaskStore, job_id: str) -> Job:
    """The run ended: its CPU time joins the job's total."""
    job = store.get_job(job_id)
    started = job.options.get("run_started_at")
    if not started:
        return job
    seconds = _seconds_since(str(started), time.time()) * int(job.options.get("run_cpus") or 1)
    total = float(job.options.get("cpu_seconds") or 0.0) + seconds
    return set_options(
        store, job_id, cpu_seconds=round(total, 3), run_started_at=None, run_cpus=None
    )
