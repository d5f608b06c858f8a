"""A cloud job whose assets all fail: Batch workers (real processes, moto S3, the OpenSearch
stand-in) stop after the minimum sample, exit 0, and finalize ends the job FAILED."""

from __future__ import annotations

from typing import Any

import pytest

from spotbot.core.records import JobStatus, TaskStatus
from tests.entry.test_batch_worker import (  # noqa: F401  (fixtures)
    IN_BUCKET,
    OUT_BUCKET,
    _create_job,
    _start_worker,
    cloud,
)

pytestmark = pytest.mark.integration
N = 600


def test_workers_stop_after_the_sample_when_everything_fails(cloud: dict[str, Any]) -> None:  # noqa: F811
    # GIVEN 600 more assets that all make the bot fall over, and a 10 % threshold
    for i in range(N):
        cloud["s3"].put_object(Bucket=IN_BUCKET, Key=f"docs/z{i:04d}.txt", Body=b"CRASH now")
    job = _create_job(cloud, "job-abort", shards=2)
    from spotbot.aws.locations import open_sink
    from spotbot.aws.opensearch_store import OpenSearchTaskStore
    from spotbot.core.steps import finalize_job

    with OpenSearchTaskStore(cloud["url"]) as store:
        store.update_job(job.id, max_failure_pct=10.0)
        total = sum(store.count_tasks(job.id).values())
        # WHEN two workers run
        procs = [_start_worker(cloud, job, i, SPOTBOT_TEST_DELAY="0.01") for i in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        # THEN both stop early and exit 0 (Batch does not retry them)
        assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
        counts = store.count_tasks(job.id)
        attempted = counts[TaskStatus.DONE] + counts[TaskStatus.FAILED]
        assert 200 <= attempted < total - 100
        assert counts[TaskStatus.RUNNING] == 0
        # AND finalize ends the job FAILED with the reason and what was left
        summary = finalize_job(store, open_sink(job.output), store.get_job(job.id))
        assert summary["status"] == "FAILED" and summary["error"].startswith("stopped early")
        assert summary["remaining"] == counts[TaskStatus.PENDING]
        assert store.get_job(job.id).status == JobStatus.FAILED
        assert summary["spend"]["cpu_hours"] > 0  # both workers' time, written by each


def test_a_worker_stops_at_the_budget_and_the_job_ends_budget_exceeded(
    cloud: dict[str, Any],  # noqa: F811
) -> None:
    # GIVEN a job with a budget far below what its 40 assets take
    job = _create_job(cloud, "job-budget", shards=2)
    from spotbot.aws.locations import open_sink
    from spotbot.aws.opensearch_store import OpenSearchTaskStore
    from spotbot.core.guards import set_options
    from spotbot.core.steps import finalize_job

    with OpenSearchTaskStore(cloud["url"]) as store:
        set_options(store, job.id, budget_usd=1e-9, vcpu_hour_usd=0.05)
        # WHEN a worker runs (one shard: the other is never started)
        proc = _start_worker(cloud, job, 0, SPOTBOT_TEST_DELAY="0.05")
        out = proc.communicate(timeout=300)
        # THEN it stops after its first batch and exits 0
        assert proc.returncode == 0, out[1][-2000:]
        assert "budget reached" in out[1]
        counts = store.count_tasks(job.id)
        assert counts[TaskStatus.PENDING] > 0 and counts[TaskStatus.RUNNING] == 0
        summary = finalize_job(store, open_sink(job.output), store.get_job(job.id))
        assert summary["status"] == "BUDGET_EXCEEDED"
        assert summary["spend"]["usd"] > 1e-9 and summary["spend"]["budget_usd"] == 1e-9
        assert store.get_job(job.id).status == JobStatus.BUDGET_EXCEEDED
