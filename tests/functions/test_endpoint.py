"""The endpoint and cleanup functions against moto's SageMaker: create, reuse, keep, delete."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from spotbot.cloud.endpoints import NAME_MAX, resource_name
from spotbot.core.records import JobStatus
from tests.functions.conftest import api_event
from tests.functions.test_steps import init_event, put_assets

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]


def _exists(sagemaker: Any, name: str) -> dict[str, bool]:
    from botocore.exceptions import ClientError

    found = {}
    for kind, call, key in (
        ("endpoint", sagemaker.describe_endpoint, "EndpointName"),
        ("config", sagemaker.describe_endpoint_config, "EndpointConfigName"),
        ("model", sagemaker.describe_model, "ModelName"),
    ):
        try:
            call(**{key: name})
            found[kind] = True
        except ClientError:
            found[kind] = False
    return found


def cleanup_event(job_id: str, status: str = "SUCCEEDED") -> dict[str, Any]:
    failure = {"Error": "", "Cause": ""} if status == "SUCCEEDED" else {"Error": "X", "Cause": "y"}
    return {
        "request": {"job_id": job_id},
        "execution_name": job_id,
        "outcome": {"status": status, "failure": failure},
    }


def test_endpoint_is_created_reused_and_deleted_by_the_last_user(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any], store: Any
) -> None:
    put_assets(aws["s3"], ["a.jpg"])
    init = load_handler("init")
    plans = [
        init.lambda_handler(init_event(job, inference="endpoint"), lambda_context)
        for job in ("job-a", "job-b")
    ]
    endpoint, cleanup = load_handler("endpoint"), load_handler("cleanup")
    events = [{k: p[k] for k in ("job_id", "bot", "model_version")} for p in plans]
    # GIVEN job A created the endpoint of (bot, version) and job B reused it
    first = endpoint.lambda_handler(events[0], lambda_context)
    second = endpoint.lambda_handler(events[1], lambda_context)
    assert first["created"] is True and second["created"] is False
    assert first["endpoint_name"] == second["endpoint_name"]
    assert first["status"] == "InService"  # moto's endpoints are in service at once
    name = first["endpoint_name"]
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,63}", name) and name.startswith("spotbot-ocr-zh-")
    assert endpoint.lambda_handler(events[0], lambda_context)["created"] is False  # retried
    model = aws["sagemaker"].describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Image"].endswith("a" * 64)
    assert store.get_job("job-b").options["endpoint_name"] == name
    # WHEN A finishes while B still runs THEN the endpoint stays
    out = cleanup.lambda_handler(cleanup_event("job-a"), lambda_context)
    assert out["status"] == "SUCCEEDED" and out["endpoint_deleted"] is False
    assert _exists(aws["sagemaker"], name) == {"endpoint": True, "config": True, "model": True}
    # WHEN B fails too THEN its cleanup deletes endpoint, config and model
    out = cleanup.lambda_handler(cleanup_event("job-b", "FAILED"), lambda_context)
    assert out["status"] == "FAILED" and out["endpoint_deleted"] is True
    assert _exists(aws["sagemaker"], name) == {"endpoint": False, "config": False, "model": False}
    assert store.get_job("job-b").status == JobStatus.FAILED
    # cleanup again (the machine's Retry) is harmless
    assert (
        cleanup.lambda_handler(cleanup_event("job-b", "FAILED"), lambda_context)["endpoint_deleted"]
        is False
    )


def test_registry_model_is_mounted_from_its_s3_folder(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any]
) -> None:
    import json

    manifest = {"bot": "ocr-zh", "version": "v7.1", "framework": "onnx", "created": "2025-03-01"}
    aws["s3"].put_object(
        Bucket="spotbot-artifacts", Key="models/ocr-zh/v7.1/bot.json", Body=json.dumps(manifest)
    )
    put_assets(aws["s3"], ["a.jpg"])
    plan = load_handler("init").lambda_handler(
        init_event("job-m", inference="endpoint"), lambda_context
    )
    assert plan["model_version"] == "v7.1"  # the newest registry version wins over the built-in
    out = load_handler("endpoint").lambda_handler(
        {k: plan[k] for k in ("job_id", "bot", "model_version")}, lambda_context
    )
    source = aws["sagemaker"].describe_model(ModelName=out["endpoint_name"])["PrimaryContainer"]
    assert source["ModelDataSource"]["S3DataSource"]["S3Uri"] == (
        "s3://spotbot-artifacts/models/ocr-zh/v7.1/"
    )
    assert source["Environment"] == {"SPOTBOT_BOT": "ocr-zh", "SPOTBOT_MODEL_VERSION": "v7.1"}


def test_endpoint_of_a_cancelled_job_raises(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, aws: dict[str, Any]
) -> None:
    put_assets(aws["s3"], ["a.jpg"])
    plan = load_handler("init").lambda_handler(
        init_event("job-x", inference="endpoint"), lambda_context
    )
    load_handler("api").lambda_handler(api_event("v1", "DELETE", "/jobs/job-x"), lambda_context)
    with pytest.raises(Exception) as caught:
        load_handler("endpoint").lambda_handler(
            {k: plan[k] for k in ("job_id", "bot", "model_version")}, lambda_context
        )
    assert type(caught.value).__name__ == "JobCancelledError"


def test_missing_environment_fails_at_cold_start(
    load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPOTBOT_SAGEMAKER_ROLE_ARN")
    monkeypatch.delenv("SPOTBOT_OPENSEARCH_ENDPOINT")
    with pytest.raises(Exception) as caught:
        load_handler("endpoint")
    assert type(caught.value).__name__ == "ConfigError"
    assert "SPOTBOT_OPENSEARCH_ENDPOINT" in str(caught.value)
    assert "SPOTBOT_SAGEMAKER_ROLE_ARN" in str(caught.value)


@pytest.mark.parametrize(
    ("bot", "version"),
    [
        ("ocr-zh", "v1"),
        ("ocr-zh", "ppocr-v6-small-rapidocr3.10.0"),
        ("car-model", "2025-01-01T12:00:00+finetune_make.model.year" * 3),
        ("sentiment-zh", "v1.0"),
    ],
)
def test_resource_names_follow_sagemaker_rules(bot: str, version: str) -> None:
    name = resource_name("spotbot-prod", bot, version)
    assert re.fullmatch(r"[a-zA-Z0-9](-?[a-zA-Z0-9])*", name) and len(name) <= NAME_MAX
    assert name == resource_name("spotbot-prod", bot, version)  # stable


def test_resource_names_keep_versions_apart() -> None:
    assert resource_name("s", "b", "v1.0") != resource_name("s", "b", "v1-0")
    assert resource_name("s", "b", "v1") == "s-b-v1"
    long_a, long_b = "x" * 80 + "a", "x" * 80 + "b"
    assert resource_name("s", "b", long_a) != resource_name("s", "b", long_b)


SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/spotbot-idle-endpoints"],
    "detail": {},
}


def _foreign_endpoint(sagemaker: Any, name: str) -> None:
    """An endpoint of another deployment in the same account (not spotbot's to count)."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/x@sha256:" + "f" * 64
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": image},
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def test_the_schedule_counts_endpoints_left_in_service_with_no_running_job(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    aws: dict[str, Any],
    store: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    # GIVEN a running job's endpoint, and another deployment's endpoint in the account
    put_assets(aws["s3"], ["a.jpg"])
    plan = load_handler("init").lambda_handler(
        init_event("job-a", inference="endpoint"), lambda_context
    )
    event = {k: plan[k] for k in ("job_id", "bot", "model_version")}
    name = load_handler("endpoint").lambda_handler(event, lambda_context)["endpoint_name"]
    _foreign_endpoint(aws["sagemaker"], "other-stack-model")
    cleanup = load_handler("cleanup")

    def idle_metric() -> list[float]:
        """IdleEndpoints as the function emitted it (EMF), under the dimension the alarm uses."""
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
        found = [x for x in lines if "IdleEndpoints" in x]
        for x in found:
            assert x["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]], x
            assert x["service"] == "spotbot"
        return [v for x in found for v in x["IdleEndpoints"]]

    # WHEN the schedule runs while the job runs THEN nothing is idle
    assert cleanup.lambda_handler(SCHEDULED, lambda_context) == {"idle_endpoints": []}
    assert idle_metric() == [0.0]
    # WHEN the job ended but its cleanup never deleted the endpoint
    store.update_job("job-a", status=JobStatus.FAILED)
    # THEN the schedule counts it (and only it), for the alarm to see
    assert cleanup.lambda_handler(SCHEDULED, lambda_context) == {"idle_endpoints": [name]}
    assert idle_metric() == [1.0]
    # AND once it is deleted the count is back to 0; a job's own cleanup is unaffected
    assert cleanup.lambda_handler(cleanup_event("job-a", "FAILED"), lambda_context)[
        "endpoint_deleted"
    ]
    assert cleanup.lambda_handler(SCHEDULED, lambda_context) == {"idle_endpoints": []}
