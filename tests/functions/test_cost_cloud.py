"""Cost in the cloud, under moto: only-new jobs (the API passes the flag, init records it, the
scan step reuses DONE results of unchanged objects: same key, size and ETag) and budgets (the
API takes one, init records it with the Spot price per vCPU, GET /jobs/{id} shows the spend)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from spotbot.core.records import REUSED_FROM, Result, TaskStatus
from tests.functions.conftest import INPUT, OUTPUT, api_event, response_json
from tests.functions.test_steps import init_event, scan_all

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]


def test_post_jobs_passes_only_new_to_the_execution(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any]
) -> None:
    api = load_handler("api")
    body = {
        "bot": "ocr-zh",
        "source": f"s3://{INPUT}/photos/",
        "output": f"s3://{OUTPUT}/tags/",
        "only_new": True,
    }
    response = api.lambda_handler(api_event("v1", "POST", "/jobs", body=body), lambda_context)
    assert response["statusCode"] == 202, response_json(response)
    sfn = aws["stepfunctions"]
    arn = sfn.list_executions(stateMachineArn=api.deployment.settings.state_machine_arn)[
        "executions"
    ][0]["executionArn"]
    import json

    assert json.loads(sfn.describe_execution(executionArn=arn)["input"])["only_new"] is True


def _tag_everything(store: Any, job_id: str) -> None:
    """What the Batch workers would do: every pending task DONE with a result."""
    job = store.get_job(job_id)
    tasks = [t for shard in range(job.shards) for t in store.claim_tasks(job_id, shard, "w", 1000)]
    store.complete_tasks(
        [
            Result(
                job_id,
                t.key,
                job.bot,
                job.model_version,
                TaskStatus.DONE,
                [{"label": t.key, "score": 1.0}],
            )
            for t in tasks
        ]
    )


def test_an_only_new_scan_reuses_unchanged_objects_and_queues_changed_ones(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    aws: dict[str, Any],
    store: Any,
) -> None:
    # GIVEN a finished job over three photos
    s3 = aws["s3"]
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        s3.put_object(Bucket=INPUT, Key=f"photos/{name}", Body=b"photo " + name.encode())
    init, scan = load_handler("init"), load_handler("scan")
    init.lambda_handler(init_event("job-first", shards=1), lambda_context)
    scan_all(scan, lambda_context, "job-first")
    _tag_everything(store, "job-first")
    # AND one photo replaced (new ETag)
    s3.put_object(Bucket=INPUT, Key="photos/b.jpg", Body=b"another photo")
    # WHEN an only-new job scans the same prefix
    init.lambda_handler(init_event("job-again", shards=1, only_new=True), lambda_context)
    assert store.get_job("job-again").opts.only_new is True
    scan_all(scan, lambda_context, "job-again")
    # THEN the two unchanged photos are DONE with the first job's results, b.jpg is queued
    counts = store.count_tasks("job-again")
    assert counts[TaskStatus.DONE] == 2 and counts[TaskStatus.PENDING] == 1
    done = {r.key: r for r in store.iter_results("job-again")}
    assert set(done) == {"a.jpg", "c.jpg"}
    assert {r.extra[REUSED_FROM] for r in done.values()} == {"job-first"}
    assert done["a.jpg"].tags == [{"label": "a.jpg", "score": 1.0}]


def test_a_budget_travels_to_the_job_and_its_spend_is_shown(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    aws: dict[str, Any],
    store: Any,
) -> None:
    api = load_handler("api")
    body = {
        "bot": "ocr-zh",
        "source": f"s3://{INPUT}/photos/",
        "output": f"s3://{OUTPUT}/tags/",
        "budget_usd": 2.5,
    }
    response = api.lambda_handler(api_event("v1", "POST", "/jobs", body=body), lambda_context)
    assert response["statusCode"] == 202
    job_id = response_json(response)["job_id"]
    # the state machine hands the request to init, which records the budget and a price
    init = load_handler("init")
    init.lambda_handler(init_event(job_id, budget_usd=2.5), lambda_context)
    job = store.get_job(job_id)
    assert job.opts.budget_usd == 2.5 and job.opts.vcpu_hour_usd == pytest.approx(0.068 / 4)
    view = api.lambda_handler(api_event("v1", "GET", f"/jobs/{job_id}"), lambda_context)
    spend = response_json(view)["spend"]
    assert spend["budget_usd"] == 2.5 and spend["cpu_hours"] == 0 and spend["usd"] == 0


@pytest.mark.parametrize("budget", [0, -1, "5"])
def test_a_bad_budget_is_a_422(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], budget: Any
) -> None:
    api = load_handler("api")
    body = {
        "bot": "ocr-zh",
        "source": f"s3://{INPUT}/photos/",
        "output": f"s3://{OUTPUT}/tags/",
        "budget_usd": budget,
    }
    response = api.lambda_handler(api_event("v1", "POST", "/jobs", body=body), lambda_context)
    assert response["statusCode"] == 422


def _inventory(s3: Any, source_bucket: str, keys: list[str]) -> str:
    """A CSV S3 Inventory report of `keys` in `source_bucket`, written to the input bucket."""
    import gzip
    import json

    rows = []
    for key in keys:
        head = s3.head_object(Bucket=source_bucket, Key=key) if source_bucket == INPUT else None
        size = head["ContentLength"] if head else 1
        etag = head["ETag"] if head else '"x"'
        rows.append(f'"{source_bucket}","{key}","{size}",{json.dumps(etag)}')
    data_key = "inventory/data/part-0.csv.gz"
    s3.put_object(Bucket=INPUT, Key=data_key, Body=gzip.compress("\n".join(rows).encode()))
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{INPUT}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, ETag",
        "files": [{"key": data_key, "size": 1, "MD5checksum": "x"}],
    }
    s3.put_object(Bucket=INPUT, Key="inventory/manifest.json", Body=json.dumps(manifest).encode())
    return f"s3://{INPUT}/inventory/manifest.json"


def test_an_inventory_manifest_is_a_cloud_source(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    aws: dict[str, Any],
    store: Any,
) -> None:
    # GIVEN two photos and an inventory report that lists them (and a text file)
    s3 = aws["s3"]
    keys = ["photos/a.jpg", "photos/b.png", "notes/readme.txt"]
    for key in keys:
        s3.put_object(Bucket=INPUT, Key=key, Body=b"content of " + key.encode())
    manifest = _inventory(s3, INPUT, keys)
    # WHEN a job is initialised and scanned from the manifest
    init, scan = load_handler("init"), load_handler("scan")
    init.lambda_handler(init_event("job-inv", source=manifest), lambda_context)
    scan_all(scan, lambda_context, "job-inv")
    # THEN its tasks are the report's rows, keyed as in the source bucket
    counts = store.count_tasks("job-inv")
    assert counts[TaskStatus.PENDING] == 2 and counts[TaskStatus.SKIPPED] == 1


def test_an_inventory_of_a_bucket_not_allowed_is_refused(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any]
) -> None:
    manifest = _inventory(aws["s3"], "someone-elses-bucket", ["x.jpg"])
    init = load_handler("init")
    with pytest.raises(Exception) as caught:
        init.lambda_handler(init_event("job-foreign", source=manifest), lambda_context)
    assert type(caught.value).__name__ == "BucketNotAllowedError"


def test_the_endpoint_hours_count_in_the_spend_until_cleanup_deletes_it(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    aws: dict[str, Any],
    store: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    from spotbot.core import envnames
    from tests.functions.test_endpoint import cleanup_event
    from tests.functions.test_steps import put_assets

    # GIVEN a stack whose price table says an hour of its endpoint type costs $0.50
    monkeypatch.setenv(envnames.INSTANCE_PRICES, json.dumps({"ml.m5.large": {"on_demand": 0.5}}))
    put_assets(aws["s3"], ["a.jpg"])
    plan = load_handler("init").lambda_handler(
        init_event("job-eh", inference="endpoint"), lambda_context
    )
    api = load_handler("api")

    def shown() -> dict[str, Any]:
        view = api.lambda_handler(api_event("v1", "GET", "/jobs/job-eh"), lambda_context)
        return dict(response_json(view)["spend"])

    assert shown()["endpoint_hours"] is None  # no endpoint yet, nothing to count
    # WHEN the endpoint step creates the job's endpoint, and two hours pass (the recorded start
    # is moved back: moto's endpoints come up at once and tests do not wait for hours)
    event = {k: plan[k] for k in ("job_id", "bot", "model_version")}
    assert load_handler("endpoint").lambda_handler(event, lambda_context)["created"] is True
    job = store.get_job("job-eh")
    assert job.options["endpoint_hour_usd"] == 0.5
    started = datetime.fromisoformat(job.options["endpoint_since"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    store.update_job("job-eh", options={**job.options, "endpoint_since": two_hours_ago})
    # THEN GET /jobs/{id} counts them: two endpoint hours, $1.00 of the job's spend
    spend = shown()
    assert spend["endpoint_hours"] == pytest.approx(2.0, abs=0.01)
    assert spend["endpoint_usd"] == pytest.approx(1.0, abs=0.01)
    assert spend["endpoint_hour_usd"] == 0.5 and spend["usd"] >= spend["endpoint_usd"]
    # WHEN the job's cleanup deletes the endpoint
    out = load_handler("cleanup").lambda_handler(cleanup_event("job-eh"), lambda_context)
    assert out["endpoint_deleted"] is True
    # THEN the hours stop there: the same figure now and later
    closed = shown()
    assert closed["endpoint_hours"] == pytest.approx(2.0, abs=0.01)
    assert store.get_job("job-eh").options.get("endpoint_since") is None
    assert store.get_job("job-eh").options["endpoint_seconds"] == pytest.approx(7200, abs=60)
    assert shown()["endpoint_hours"] == closed["endpoint_hours"]
    # and a retried cleanup does not count them twice
    load_handler("cleanup").lambda_handler(cleanup_event("job-eh"), lambda_context)
    assert shown()["endpoint_hours"] == closed["endpoint_hours"]


def test_a_reused_endpoint_counts_from_when_the_job_took_it_and_stops_at_its_cleanup(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    aws: dict[str, Any],
    store: Any,
) -> None:
    from tests.functions.test_endpoint import cleanup_event
    from tests.functions.test_steps import put_assets

    # GIVEN two jobs of the same bot and model: A creates the endpoint, B reuses it
    put_assets(aws["s3"], ["a.jpg"])
    init, endpoint = load_handler("init"), load_handler("endpoint")
    for job_id in ("job-ra", "job-rb"):
        plan = init.lambda_handler(init_event(job_id, inference="endpoint"), lambda_context)
        endpoint.lambda_handler(
            {k: plan[k] for k in ("job_id", "bot", "model_version")}, lambda_context
        )
    # WHEN A finishes first (the endpoint stays for B)
    out = load_handler("cleanup").lambda_handler(cleanup_event("job-ra"), lambda_context)
    assert out["endpoint_deleted"] is False
    # THEN A's endpoint time is closed, B's still runs, both priced at the shipped table's
    # ml.m5.large hour
    a, b = store.get_job("job-ra").options, store.get_job("job-rb").options
    assert a.get("endpoint_since") is None and a["endpoint_seconds"] >= 0
    assert b["endpoint_since"] and b.get("endpoint_seconds") is None
    assert a["endpoint_hour_usd"] == b["endpoint_hour_usd"] == 0.115
