"""The api function, called with API Gateway REST (v1) and HTTP API (v2) proxy events under moto."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from tests.functions.conftest import (
    BOT_REPOSITORY,
    CUSTOM_BOT_COMPUTE,
    FOREIGN,
    INPUT,
    OUTPUT,
    api_event,
    response_json,
)

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
        "image_uri": f"{BOT_REPOSITORY}@sha256:" + "b" * 64,
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


LEAF = {
    "image_uri": f"{BOT_REPOSITORY}@sha256:" + "c" * 64,
    "model_uri": f"s3://{INPUT}/models/leaf/v1/",
    "extensions": ["jpg"],
    "model_version": "v1",
    "command": ["python", "-m", "leafbot", "work"],
    "vcpus": 4,
    "memory_mib": 8192,
}


def _definition(aws: dict[str, Any], arn: str) -> dict[str, Any]:
    (found,) = aws["batch"].describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
    return dict(found)


def test_registering_a_bot_registers_its_batch_job_definition(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any]
) -> None:
    # WHEN a custom bot is registered with its image, command and resources
    status, bot = call(api, lambda_context, "PUT", "/bots/leaf-id", body=LEAF)
    # THEN a job definition under the stack's prefix runs that image and command
    assert status == 200, bot
    arn = bot["job_definition_arn"]
    definition = _definition(aws, arn)
    assert definition["jobDefinitionName"] == "spotbot-custom-leaf-id"
    assert definition["status"] == "ACTIVE"
    container = definition["containerProperties"]
    assert container["image"] == LEAF["image_uri"]
    assert container["command"] == LEAF["command"]
    assert container["jobRoleArn"] == CUSTOM_BOT_COMPUTE["job_role_arn"]
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {
        "VCPU": "4",
        "MEMORY": "8192",
    }
    assert container["privileged"] is False and container["user"] == "1000"
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["SPOTBOT_BOT"] == "leaf-id"
    assert env["SPOTBOT_OPENSEARCH_ENDPOINT"] and env["SPOTBOT_ARTIFACTS_BUCKET"]
    assert definition["retryStrategy"]["attempts"] == 3
    assert definition["retryStrategy"]["evaluateOnExit"][0]["onStatusReason"] == "Host EC2*"
    # AND registering it again makes a new revision and deregisters the old one
    status, again = call(api, lambda_context, "PUT", "/bots/leaf-id", body={**LEAF, "vcpus": 2})
    assert status == 200 and again["job_definition_arn"] != arn
    assert _definition(aws, arn)["status"] == "INACTIVE"
    assert _definition(aws, again["job_definition_arn"])["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("image", "status", "error"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/other@sha256:" + "d" * 64, 403, "image"),
        ("docker.io/library/python@sha256:" + "d" * 64, 403, "image"),
        (f"{BOT_REPOSITORY}:latest", 422, "invalid_request"),
        (BOT_REPOSITORY, 422, "invalid_request"),
    ],
)
def test_an_image_from_elsewhere_or_not_by_digest_is_refused(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any], image: str, status: int, error: str
) -> None:
    # WHEN a bot names an image outside the allowed repositories, or not by its digest
    got, body = call(api, lambda_context, "PUT", "/bots/leaf-x", body={**LEAF, "image_uri": image})
    # THEN it is refused in one line, and nothing is registered in Batch or the catalog
    assert got == status, body
    if status == 403:
        assert body["error"] == "image_not_allowed", body
        assert "\n" not in body["detail"] and BOT_REPOSITORY in body["detail"]
    assert aws["batch"].describe_job_definitions()["jobDefinitions"] == []
    assert call(api, lambda_context, "GET", "/bots/leaf-x")[0] == 404


def test_removing_a_bot_deregisters_it_and_is_refused_while_a_job_uses_it(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    from spotbot.core.records import Job, JobStatus

    # GIVEN a registered bot and an unfinished job of it
    status, bot = call(api, lambda_context, "PUT", "/bots/leaf-id", body=LEAF)
    assert status == 200, bot
    job = Job(id="job-leaf", bot="leaf-id", source=VALID["source"], output=VALID["output"])
    store.create_job(job)
    store.update_job("job-leaf", status=JobStatus.RUNNING)
    # WHEN it is removed THEN the API refuses with 409, naming the job; nothing changes
    status, body = call(api, lambda_context, "DELETE", "/bots/leaf-id")
    assert status == 409 and "job-leaf" in body["detail"] and "\n" not in body["detail"], body
    assert _definition(aws, bot["job_definition_arn"])["status"] == "ACTIVE"
    # and registering it anew is refused as well (its arrays would run another definition)
    assert call(api, lambda_context, "PUT", "/bots/leaf-id", body=LEAF)[0] == 409
    # WHEN the job ended THEN removing it deregisters its job definition
    store.update_job("job-leaf", status=JobStatus.SUCCEEDED)
    status, body = call(api, lambda_context, "DELETE", "/bots/leaf-id")
    assert status == 200, body
    assert body == {
        "name": "leaf-id",
        "removed": True,
        "job_definition_arn": bot["job_definition_arn"],
        "job_definition_deregistered": True,
    }
    assert _definition(aws, bot["job_definition_arn"])["status"] == "INACTIVE"
    # AND the bot is gone: 404 to read or remove it, 400 to start a job with it
    assert call(api, lambda_context, "GET", "/bots/leaf-id")[0] == 404
    assert call(api, lambda_context, "DELETE", "/bots/leaf-id")[0] == 404
    status, body = call(api, lambda_context, "POST", "/jobs", body={**VALID, "bot": "leaf-id"})
    assert status == 400 and body["error"] == "unknown_bot"
    # AND a built-in bot cannot be removed
    status, body = call(api, lambda_context, "DELETE", "/bots/ocr-zh")
    assert status == 400 and "built-in" in body["detail"]


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
