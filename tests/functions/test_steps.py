"""The Step-Functions-invoked functions (init, scan, finalize, requeue, cleanup) on their contract:
events shaped as workflows/tagging.py passes them, moto S3 and the OpenSearch stand-in."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

from spotbot.core.records import JobStatus, Result, TaskStatus
from tests.functions.conftest import (
    EVENTS,
    INPUT,
    JOB_DEFINITIONS,
    OUTPUT,
    api_event,
    response_json,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

LIMITS = {
    "default_shards": 4,
    "max_shards": 100_000,
    "max_array_size": 3,
    "default_poll_seconds": 1,
    "default_max_failure_pct": 100.0,
}


def init_event(job_id: str, **request: Any) -> dict[str, Any]:
    base = {"bot": "ocr-zh", "source": f"s3://{INPUT}/photos/", "output": f"s3://{OUTPUT}/tags/"}
    return {
        "request": {"job_id": job_id, **base, **request},
        "execution_name": job_id,
        "job_definitions": JOB_DEFINITIONS,
        "limits": LIMITS,
    }


def put_assets(s3: Any, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=INPUT, Key=f"photos/{k}", Body=b"x"), keys))


def scan_all(scan: ModuleType, ctx: Any, job_id: str, max_pages: int = 1) -> list[dict[str, Any]]:
    """Loop like the state machine's ScanAssets <-> ScanMore? until the cursor says done."""
    cursor: dict[str, Any] = {
        "done": False,
        "continuation_token": None,
        "pages": 0,
        "scanned": 0,
        "accepted": 0,
    }
    cursors = []
    while not cursor["done"]:
        event = {"job_id": job_id, "budget_seconds": 600, "cursor": cursor, "max_pages": max_pages}
        cursor = scan.lambda_handler(event, ctx)
        cursors.append(cursor)
        assert len(cursors) < 50, "the scan loop does not end"
    return cursors


def finish_tasks(store: Any, job_id: str, shards: int, fail_every: int = 0) -> None:
    """Play the workers: every task DONE, or every n-th FAILED."""
    n = 0
    for shard in range(shards):
        for task in store.claim_tasks(job_id, shard, "test-worker", 10_000):
            n += 1
            failed = bool(fail_every) and n % fail_every == 0
            store.complete_tasks(
                [
                    Result(
                        job_id=job_id,
                        key=task.key,
                        bot="ocr-zh",
                        model_version="v",
                        status=TaskStatus.FAILED if failed else TaskStatus.DONE,
                        tags=[] if failed else [{"label": "出口", "score": 0.9}],
                        extra={} if failed else {"text": "出口"},
                        error="cannot decode" if failed else None,
                    )
                ]
            )


def test_init_records_the_job_and_plans_chunks(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, store: Any
) -> None:
    init = load_handler("init")
    plan = init.lambda_handler(init_event("job-init", shards=7, max_failure_pct=5), lambda_context)
    assert plan["job_id"] == "job-init" and plan["shards"] == 7
    assert plan["chunks"] == [
        {"index": 0, "offset": 0, "size": 3},
        {"index": 1, "offset": 3, "size": 2},
        {"index": 2, "offset": 5, "size": 2},
    ]
    assert plan["inference"] == "in-container" and plan["max_failure_pct"] == 5.0
    assert plan["job_definition"] == JOB_DEFINITIONS["ocr-zh"] and plan["poll_seconds"] == 1
    assert plan["model_version"].startswith("ppocr")
    # idempotent: a retried init returns the same plan and keeps one job
    assert (
        init.lambda_handler(init_event("job-init", shards=7, max_failure_pct=5), lambda_context)
        == plan
    )
    assert [j.id for j in store.list_jobs()] == ["job-init"]


@pytest.mark.parametrize(
    ("request_fields", "error"),
    [
        ({"bot": "car-model"}, "UnknownBotError"),  # installed but not deployed here
        ({"bot": "nobody"}, "UnknownBotError"),
        ({"source": "s3://someone-elses-bucket/x/"}, "BucketNotAllowedError"),
        (
            {"output": "s3://spotbot-in/tags/", "source": "s3://spotbot-nowhere/x/"},
            "BucketNotAllowedError",
        ),
        ({"model_version": "v404"}, "UsageError"),
    ],
)
def test_init_errors_are_typed_for_catch(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    request_fields: dict[str, Any],
    error: str,
) -> None:
    init = load_handler("init")
    with pytest.raises(Exception) as caught:
        init.lambda_handler(init_event("job-bad", **request_fields), lambda_context)
    assert type(caught.value).__name__ == error


def test_init_refuses_an_unreadable_source(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTBOT_ALLOWED_BUCKETS", f"{INPUT},{OUTPUT},spotbot-missing")
    init = load_handler("init")
    with pytest.raises(Exception) as caught:
        init.lambda_handler(init_event("job-x", source="s3://spotbot-missing/x/"), lambda_context)
    assert type(caught.value).__name__ == "SourceError"


@pytest.mark.slow  # 3,500 objects through moto and the index: ~30 s
def test_scan_loops_over_thousands_of_keys_each_once(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    # GIVEN 3,500 objects: 3,000 images the bot accepts, 500 text files it skips
    keys = [f"{i // 100:03d}/img-{i:05d}.jpg" for i in range(3000)]
    skipped = [f"notes/n-{i:04d}.txt" for i in range(500)]
    put_assets(aws["s3"], keys + skipped)
    init, scan = load_handler("init"), load_handler("scan")
    plan = init.lambda_handler(init_event("job-scan", shards=5), lambda_context)
    # WHEN the scan runs one page per call until done
    cursors = scan_all(scan, lambda_context, "job-scan", max_pages=1)
    # THEN four calls (1,000 keys a page), a token between them, exact cumulative counts
    assert [c["done"] for c in cursors] == [False, False, False, True]
    assert (
        all(c["continuation_token"] for c in cursors[:-1])
        and cursors[-1]["continuation_token"] is None
    )
    assert [c["pages"] for c in cursors] == [1, 2, 3, 4]
    assert cursors[-1]["scanned"] == 3500 and cursors[-1]["accepted"] == 3000
    assert all(len(json.dumps(c)) < 32 * 1024 for c in cursors)
    # and every accepted key is exactly one PENDING task, in its shard
    claimed = [
        t.key
        for shard in range(plan["shards"])
        for t in store.claim_tasks("job-scan", shard, "w", 10_000)
    ]
    assert Counter(claimed) == Counter(keys)
    assert store.count_tasks("job-scan")[TaskStatus.SKIPPED] == 500
    assert store.get_job("job-scan").status == JobStatus.RUNNING
    # a retried last slice (the machine's Retry) changes nothing
    again = scan.lambda_handler({"job_id": "job-scan", "cursor": cursors[-1]}, lambda_context)
    assert again["done"] and again["scanned"] == 3500


def test_scan_of_a_cancelled_job_raises_job_cancelled(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any]
) -> None:
    put_assets(aws["s3"], ["a.jpg"])
    load_handler("init").lambda_handler(init_event("job-c"), lambda_context)
    api = load_handler("api")
    assert (
        api.lambda_handler(api_event("v1", "DELETE", "/jobs/job-c"), lambda_context)["statusCode"]
        == 202
    )
    with pytest.raises(Exception) as caught:
        load_handler("scan").lambda_handler({"job_id": "job-c"}, lambda_context)
    assert type(caught.value).__name__ == "JobCancelledError"


def test_scan_rejects_a_malformed_event(
    load_handler: Callable[[str], ModuleType], lambda_context: Any
) -> None:
    with pytest.raises(Exception) as caught:
        load_handler("scan").lambda_handler({"cursor": {}}, lambda_context)
    assert type(caught.value).__name__ == "ValidationError"


def _run_to_finalize(
    load_handler: Callable[[str], ModuleType],
    ctx: Any,
    aws: dict[str, Any],
    store: Any,
    job_id: str,
    **req: Any,
) -> ModuleType:
    put_assets(aws["s3"], [f"p{i:02d}.jpg" for i in range(20)] + ["readme.txt"])
    plan = load_handler("init").lambda_handler(init_event(job_id, **req), ctx)
    scan_all(load_handler("scan"), ctx, job_id, max_pages=5)
    finish_tasks(store, job_id, plan["shards"], fail_every=req.pop("_fail_every", 0) or 4)
    return load_handler("finalize")


def test_finalize_writes_summary_and_manifest(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    finalize = _run_to_finalize(
        load_handler, lambda_context, aws, store, "job-fin", max_failure_pct=50
    )
    workers = [{"batch_job_id": "b-1", "status": "SUCCEEDED"}]
    out = finalize.lambda_handler(
        {"job_id": "job-fin", "max_failure_pct": 50.0, "workers": workers}, lambda_context
    )
    assert out["status"] == "SUCCEEDED" and out["error"] == "" and out["cause"] == ""
    assert out["counts"] == {
        "total": 21,
        "done": 15,
        "failed": 5,
        "skipped": 1,
        "pending": 0,
        "running": 0,
    }
    assert out["failed_pct"] == 25.0
    assert out["summary_uri"] == f"s3://{OUTPUT}/tags/job-fin/summary.json"
    s3 = aws["s3"]
    summary = json.loads(
        s3.get_object(Bucket=OUTPUT, Key="tags/job-fin/summary.json")["Body"].read()
    )
    assert summary["status"] == "SUCCEEDED" and summary["counts"]["done"] == 15
    lines = (
        s3.get_object(Bucket=OUTPUT, Key="tags/job-fin/results.jsonl")["Body"].read().splitlines()
    )
    records = [json.loads(line) for line in lines]
    assert len(records) == 21 and len({r["key"] for r in records}) == 21
    # and the report lands beside summary.json, through the same sink
    report = s3.get_object(Bucket=OUTPUT, Key="tags/job-fin/report.html")
    assert report["ContentType"].startswith("text/html")
    assert b"<b>21</b>total" in report["Body"].read()
    assert store.get_job("job-fin").status == JobStatus.SUCCEEDED


def test_finalize_fails_the_job_over_its_threshold(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    finalize = _run_to_finalize(
        load_handler, lambda_context, aws, store, "job-thr", max_failure_pct=10
    )
    out = finalize.lambda_handler(
        {"job_id": "job-thr", "max_failure_pct": 10.0, "workers": []}, lambda_context
    )
    assert out["status"] == "FAILED" and out["error"] == "Spotbot.FailureThresholdExceeded"
    assert "5 of 20 assets failed (25.0%)" in out["cause"] and "10%" in out["cause"]
    assert store.get_job("job-thr").status == JobStatus.FAILED
    summary = aws["s3"].get_object(Bucket=OUTPUT, Key="tags/job-thr/summary.json")["Body"].read()
    assert json.loads(summary)["status"] == "FAILED"


def test_finalize_of_a_cancelled_job_raises_job_cancelled_and_writes_nothing(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    # GIVEN a job whose workers ran, cancelled through the API before finalize
    finalize = _run_to_finalize(load_handler, lambda_context, aws, store, "job-fcx")
    api = load_handler("api")
    assert (
        api.lambda_handler(api_event("v1", "DELETE", "/jobs/job-fcx"), lambda_context)["statusCode"]
        == 202
    )
    # WHEN finalize runs THEN it refuses (the machine's Catch sends it to cleanup)
    with pytest.raises(Exception) as caught:
        finalize.lambda_handler({"job_id": "job-fcx", "workers": []}, lambda_context)
    assert type(caught.value).__name__ == "JobCancelledError"
    # and it wrote no summary and left the status for cleanup to set
    listed = aws["s3"].list_objects_v2(Bucket=OUTPUT, Prefix="tags/job-fcx/")
    assert "summary.json" not in {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}
    assert store.get_job("job-fcx").status == JobStatus.RUNNING


def test_requeue_then_retry_api(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    finalize = _run_to_finalize(
        load_handler, lambda_context, aws, store, "job-rq", max_failure_pct=10
    )
    api = load_handler("api")
    # a running job cannot be retried
    response = api.lambda_handler(api_event("v1", "POST", "/jobs/job-rq/retry"), lambda_context)
    assert response["statusCode"] == 409
    finalize.lambda_handler({"job_id": "job-rq", "workers": []}, lambda_context)
    # GIVEN a job that finished FAILED with 5 failed assets, WHEN retried through the API
    response = api.lambda_handler(
        api_event("v1", "POST", "/jobs/job-rq/retry", body={"max_failure_pct": 30}), lambda_context
    )
    assert response["statusCode"] == 202, response
    started = response_json(response)
    assert started == {
        "job_id": "job-rq",
        "execution_name": "job-rq-retry1",
        "failed": 5,
        "untagged": 0,
    }
    execution = aws["stepfunctions"].describe_execution(
        executionArn=api.deployment.settings.retry_state_machine_arn.replace(
            ":stateMachine:", ":execution:"
        )
        + ":job-rq-retry1"
    )
    assert json.loads(execution["input"]) == {"job_id": "job-rq", "max_failure_pct": 30.0}
    # THEN the retry machine's requeue step puts exactly the failed tasks back
    event = {
        **init_event("job-rq"),
        "request": json.loads(execution["input"]),
        "execution_name": "job-rq-retry1",
    }
    plan = load_handler("requeue").lambda_handler(event, lambda_context)
    assert plan["requeued"] == 5 and plan["job_id"] == "job-rq" and plan["max_failure_pct"] == 30.0
    assert plan["shards"] == 4 and len(plan["chunks"]) == 2
    counts = store.count_tasks("job-rq")
    assert (counts[TaskStatus.PENDING], counts[TaskStatus.FAILED], counts[TaskStatus.DONE]) == (
        5,
        0,
        15,
    )
    assert store.get_job("job-rq").status == JobStatus.RUNNING
    view = response_json(api.lambda_handler(api_event("v1", "GET", "/jobs/job-rq"), lambda_context))
    assert view["execution"]["name"] == "job-rq-retry1" and view["counts"]["pending"] == 5


def test_get_job_shows_counts_rate_and_eta(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    put_assets(aws["s3"], [f"p{i}.jpg" for i in range(10)])
    load_handler("init").lambda_handler(init_event("job-view"), lambda_context)
    scan_all(load_handler("scan"), lambda_context, "job-view")
    tasks = store.claim_tasks("job-view", 0, "w", 2) or store.claim_tasks("job-view", 1, "w", 2)
    store.complete_tasks([Result("job-view", t.key, "ocr-zh", "v", TaskStatus.DONE) for t in tasks])
    api = load_handler("api")
    for kind in ("v1", "v2"):
        response = api.lambda_handler(api_event(kind, "GET", "/jobs/job-view"), lambda_context)
        view = response_json(response)
        assert response["statusCode"] == 200
        assert view["status"] == "RUNNING" and view["counts"]["total"] == 10
        assert view["counts"]["done"] == len(tasks)
        assert view["assets_per_second"] > 0 and view["eta_seconds"] is not None
    listed = response_json(api.lambda_handler(api_event("v1", "GET", "/jobs"), lambda_context))
    assert [j["job_id"] for j in listed["jobs"]] == ["job-view"]


def test_cleanup_sets_cancelled_after_a_cancel_request(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    put_assets(aws["s3"], ["a.jpg"])
    load_handler("init").lambda_handler(init_event("job-cx"), lambda_context)
    api = load_handler("api")
    response = api.lambda_handler(api_event("v2", "DELETE", "/jobs/job-cx"), lambda_context)
    assert response["statusCode"] == 202 and response_json(response)["status"] == "CANCELLING"
    assert store.get_job("job-cx").options["cancel_requested_at"]
    event = {
        "request": {"job_id": "job-cx"},
        "execution_name": "job-cx",
        "outcome": {"status": "FAILED", "failure": {"Error": "JobCancelledError", "Cause": "{}"}},
    }
    cleanup = load_handler("cleanup")
    out = cleanup.lambda_handler(event, lambda_context)
    assert out == {
        "job_id": "job-cx",
        "status": "CANCELLED",
        "error": "Spotbot.JobCancelled",
        "cause": "The job was cancelled.",
        "endpoint_deleted": False,
    }
    assert store.get_job("job-cx").status == JobStatus.CANCELLED
    assert cleanup.lambda_handler(event, lambda_context) == out  # idempotent
    # a cancelled job cancelled again is fine; a finished one is a conflict
    assert (
        api.lambda_handler(api_event("v1", "DELETE", "/jobs/job-cx"), lambda_context)["statusCode"]
        == 202
    )


def test_cleanup_makes_a_readable_cause_and_handles_eventbridge(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    put_assets(aws["s3"], ["a.jpg"])
    load_handler("init").lambda_handler(init_event("job-1"), lambda_context)
    cleanup = load_handler("cleanup")
    lambda_error = json.dumps(
        {
            "errorMessage": "cannot list s3://x: AccessDenied",
            "errorType": "SourceError",
            "stackTrace": ["  File ..."],
        }
    )
    event = {
        "request": {"job_id": "job-1"},
        "execution_name": "job-1",
        "outcome": {"status": "FAILED", "failure": {"Error": "SourceError", "Cause": lambda_error}},
    }
    out = cleanup.lambda_handler(event, lambda_context)
    assert out["status"] == "FAILED" and out["error"] == "SourceError"
    assert out["cause"] == "cannot list s3://x: AccessDenied"
    assert store.get_job("job-1").error == "cannot list s3://x: AccessDenied"
    # an aborted execution (StopExecution, timeout) reaches cleanup through EventBridge
    aborted = json.loads((EVENTS / "cleanup_eventbridge.json").read_text())
    out = cleanup.lambda_handler(aborted, lambda_context)
    assert out["job_id"] == "job-1" and out["status"] == "FAILED" and "ABORTED" in out["cause"]
    # a job whose init failed before recording it is still cleaned up without error
    event["request"], event["execution_name"] = {}, "job-never-recorded"
    assert cleanup.lambda_handler(event, lambda_context)["status"] == "FAILED"


def test_cancel_of_a_finished_job_is_a_conflict(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    finalize = _run_to_finalize(load_handler, lambda_context, aws, store, "job-done")
    finalize.lambda_handler({"job_id": "job-done", "workers": []}, lambda_context)
    api = load_handler("api")
    response = api.lambda_handler(api_event("v1", "DELETE", "/jobs/job-done"), lambda_context)
    assert response["statusCode"] == 409 and response_json(response)["error"] == "conflict"
