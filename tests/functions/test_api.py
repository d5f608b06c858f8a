"""The api function, called with API Gateway REST (v1) and HTTP API (v2) proxy events under moto."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from tests.functions.conftest import FOREIGN, INPUT, OUTPUT, api_event, response_json

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

VALID = {"bot": "ocr-zh", "source": f"s3://{INPUT}/photos/", "output": f"s3://{OUTPUT}/tags/"}


@pytest.fixture
def api(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("api")


def call(
    api: ModuleType, ctx: Any, method: str, path: str, kind: str = "v1", **kw: Any
) -> tuple[int, Any]:
    response = api.lambda_handler(api_event(kind, method, path, **kw), ctx)
    return response["statusCode"], response_json(response)


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_post_job_starts_one_execution_per_client_token(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any], kind: str
) -> None:
    # GIVEN a valid request with a client token
    body = {**VALID, "client_token": "tok-1", "shards": 4}
    # WHEN it is posted twice
    status1, first = call(api, lambda_context, "POST", "/jobs", kind, body=body)
    status2, second = call(api, lambda_context, "POST", "/jobs", kind, body=body)
    # THEN one job, one execution named after it, and the retry reports the same job
    assert (status1, status2) == (202, 200)
    assert first["created"] is True and second["created"] is False
    assert first["job_id"] == second["job_id"]
    executions = aws["stepfunctions"].list_executions(
        stateMachineArn=api.deployment.settings.state_machine_arn
    )["executions"]
    assert [e["name"] for e in executions] == [first["job_id"]]


def test_same_token_for_another_request_is_a_conflict(api: ModuleType, lambda_context: Any) -> None:
    call(api, lambda_context, "POST", "/jobs", body={**VALID, "client_token": "tok-2"})
    status, body = call(
        api, lambda_context, "POST", "/jobs", body={**VALID, "client_token": "tok-2", "shards": 9}
    )
    assert status == 409 and body["error"] == "conflict"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"source": VALID["source"], "output": VALID["output"]}, 422, "invalid_request"),
        ({**VALID, "shards": "4"}, 422, "invalid_request"),
        ({**VALID, "shards": 0}, 422, "invalid_request"),
        ({**VALID, "max_failure_pct": 150}, 422, "invalid_request"),
        ({**VALID, "inference": "gpu"}, 422, "invalid_request"),
        ({**VALID, "colour": "red"}, 422, "invalid_request"),
        ({**VALID, "source": "https://example.com/x"}, 422, "invalid_request"),
        ({**VALID, "source": "s3://"}, 422, "invalid_request"),
        ({**VALID, "output": "s3://Bad_Bucket!/x"}, 422, "invalid_request"),
        ({**VALID, "bot": "no-such-bot"}, 400, "unknown_bot"),
        ({**VALID, "source": f"s3://{FOREIGN}/x/"}, 403, "bucket_not_allowed"),
        ({**VALID, "output": f"s3://{FOREIGN}/x/"}, 403, "bucket_not_allowed"),
        ({**VALID, "model_version": "v404"}, 400, "bad_request"),
        ([VALID], 422, "invalid_request"),
    ],
)
def test_bad_job_requests_are_4xx_json(
    api: ModuleType, lambda_context: Any, body: Any, status: int, error: str
) -> None:
    got, answer = call(api, lambda_context, "POST", "/jobs", body=body)
    assert (got, answer["error"]) == (status, error), answer
    assert answer["detail"]
    assert "Traceback" not in str(answer)


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_malformed_json_is_400(api: ModuleType, lambda_context: Any, kind: str) -> None:
    status, body = call(api, lambda_context, "POST", "/jobs", kind, raw_body='{"bot": "ocr-zh",')
    assert (status, body["error"]) == (400, "malformed_json")


def test_empty_body_is_422(api: ModuleType, lambda_context: Any) -> None:
    status, body = call(api, lambda_context, "POST", "/jobs")
    assert status == 422 and body["error"] == "invalid_request"


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_oversized_body_is_413(api: ModuleType, lambda_context: Any, kind: str) -> None:
    huge = {**VALID, "client_token": "x", "padding": "p" * 300_000}
    status, body = call(api, lambda_context, "POST", "/jobs", kind, body=huge)
    assert (status, body["error"]) == (413, "payload_too_large")


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_unknown_job_is_404(api: ModuleType, lambda_context: Any, kind: str) -> None:
    for method, path in (("GET", "/jobs/job-nope"), ("DELETE", "/jobs/job-nope")):
        status, body = call(api, lambda_context, method, path, kind)
        assert (status, body["error"]) == (404, "job_not_found"), (method, body)
    status, body = call(api, lambda_context, "POST", "/jobs/job-nope/retry", kind)
    assert (status, body["error"]) == (404, "job_not_found")


def test_bad_job_id_and_unknown_route(api: ModuleType, lambda_context: Any) -> None:
    assert call(api, lambda_context, "GET", "/jobs/bad%20id!")[0] == 422
    status, body = call(api, lambda_context, "GET", "/nowhere")
    assert (status, body["error"]) == (404, "not_found")


def test_started_job_is_visible_before_init_ran(api: ModuleType, lambda_context: Any) -> None:
    _, started = call(api, lambda_context, "POST", "/jobs", body=VALID)
    status, view = call(api, lambda_context, "GET", f"/jobs/{started['job_id']}")
    assert status == 200
    assert view["status"] == "STARTING"
    assert view["execution"]["status"] == "RUNNING"  # moto leaves the Pass machine running


def test_bots_catalog_and_registration(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any]
) -> None:
    status, bots = call(api, lambda_context, "GET", "/bots")
    assert status == 200 and "ocr-zh" in {b["name"] for b in bots["bots"]}
    status, bot = call(api, lambda_context, "GET", "/bots/ocr-zh")
    assert status == 200 and "jpg" in bot["accepts"] and bot["custom"] is False
    assert call(api, lambda_context, "GET", "/bots/nobody")[0] == 404

    registration = {
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/leaf@sha256:" + "b" * 64,
        "model_uri": f"s3://{INPUT}/models/leaf/",
        "extensions": ["jpg", "png"],
        "description": "leaf species",
    }
    status, bot = call(api, lambda_context, "PUT", "/bots/leaf-id", body=registration)
    assert status == 200 and bot["custom"] is True and bot["accepts"] == ["jpg", "png"]
    status, bot = call(api, lambda_context, "GET", "/bots/leaf-id")
    assert status == 200 and bot["image_uri"] == registration["image_uri"]
    assert "leaf-id" in {b["name"] for b in call(api, lambda_context, "GET", "/bots")[1]["bots"]}

    assert call(api, lambda_context, "PUT", "/bots/ocr-zh", body=registration)[0] == 400
    foreign = {**registration, "model_uri": f"s3://{FOREIGN}/m/"}
    assert call(api, lambda_context, "PUT", "/bots/leaf-2", body=foreign)[0] == 403
    assert call(api, lambda_context, "PUT", "/bots/leaf-3", body={"image_uri": "x"})[0] == 422
    # a job for the registered bot passes the API's checks
    status, _ = call(api, lambda_context, "POST", "/jobs", body={**VALID, "bot": "leaf-id"})
    assert status == 202


def test_bot_models_lists_registry_versions(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any]
) -> None:
    import json

    manifest = {"bot": "ocr-zh", "version": "v2", "framework": "onnx", "created": "2025-01-02"}
    aws["s3"].put_object(
        Bucket="spotbot-artifacts", Key="models/ocr-zh/v2/bot.json", Body=json.dumps(manifest)
    )
    status, body = call(api, lambda_context, "GET", "/bots/ocr-zh/models")
    assert status == 200 and [v["version"] for v in body["versions"]] == ["v2"]
    assert call(api, lambda_context, "GET", "/bots/nobody/models")[0] == 404


def test_search_requires_a_query(api: ModuleType, lambda_context: Any) -> None:
    assert call(api, lambda_context, "GET", "/search")[0] == 422
    status, body = call(api, lambda_context, "GET", "/search", query={"q": "出口", "bot": "ocr-zh"})
    assert status == 200 and body == {"query": "出口", "hits": [], "next_cursor": None}


def test_search_pages_with_a_cursor(api: ModuleType, lambda_context: Any, store: Any) -> None:
    from spotbot.core.records import Job, Result, Task, TaskStatus

    # GIVEN five tagged assets that all match
    store.create_job(Job(id="job-s", bot="ocr-zh", source="s3://a/b", output="s3://c/d"))
    store.put_tasks([Task(job_id="job-s", key=f"k{i}.jpg") for i in range(5)])
    claimed = store.claim_tasks("job-s", 0, "w", 10)
    store.complete_tasks(
        [
            Result("job-s", t.key, "ocr-zh", "v", TaskStatus.DONE, [{"label": "出口", "score": 1}])
            for t in claimed
        ]
    )
    # WHEN a client follows next_cursor two hits at a time
    keys, cursor, pages = [], None, 0
    while True:
        query = {"q": "出口", "limit": "2", **({"cursor": cursor} if cursor else {})}
        status, body = call(api, lambda_context, "GET", "/search", query=query)
        assert status == 200, body
        keys += [h["key"] for h in body["hits"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # THEN it gets every hit once, and a cursor it made up is a 400
    assert sorted(keys) == [f"k{i}.jpg" for i in range(5)] and pages == 3
    status, body = call(api, lambda_context, "GET", "/search", query={"q": "出口", "cursor": "zz"})
    assert status == 400 and "invalid cursor" in body["detail"]
