"""Fixtures of the function tests: moto in process, the OpenSearch stand-in, real-shaped events.

Handlers read their settings at import (cold start), so each test imports them afresh, inside
the mock and with this test's environment, through ``load_handler``.
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest

pytest.importorskip("aws_lambda_powertools")
pytest.importorskip("osmem_server")

from moto import mock_aws

from spotbot.core import envnames

EVENTS = Path(__file__).resolve().parent.parent / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
ARTIFACTS = "spotbot-artifacts"
INPUT = "spotbot-in"
OUTPUT = "spotbot-out"
FOREIGN = "someone-elses-bucket"
TAGGING_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:spotbot-tagging"
RETRY_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:spotbot-retry"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/spotbot-sagemaker"
IMAGES = {"ocr-zh": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/spotbot-ocr-zh@sha256:" + "a" * 64}
JOB_DEFINITIONS = {"ocr-zh": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/spotbot-ocr-zh:1"}
#: The repository custom bots' images may come from (what infra allows the api function).
BOT_REPOSITORY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/spotbot-custom-bots"
CUSTOM_BOT_COMPUTE = {
    "name_prefix": "spotbot-custom-",
    "job_role_arn": f"arn:aws:iam::{ACCOUNT}:role/spotbot-job",
    "log_group": "/aws/batch/spotbot-workers",
    "image_repositories": [BOT_REPOSITORY],
    "attempts": 3,
    "timeout_seconds": 3600,
}
HANDLERS = ("api", "init", "scan", "endpoint", "finalize", "cleanup", "requeue")


@dataclass
class FakeLambdaContext:
    function_name: str = "spotbot-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:spotbot-test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    log_group_name: str = "/aws/lambda/spotbot-test"
    log_stream_name: str = "2025/01/01/[$LATEST]abcdef"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def cloud_env(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment infra gives the functions, pointing at moto and a fresh index."""
    clone = request.getfixturevalue("osmem_clone")
    for name in [k for k in list(__import__("os").environ) if k.startswith(("SPOTBOT_", "AWS_"))]:
        monkeypatch.delenv(name)
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "spotbot-test",
        "POWERTOOLS_SERVICE_NAME": "spotbot",
        envnames.OPENSEARCH_ENDPOINT: clone.url,
        envnames.INDEX_PREFIX: "spotbot-",
        envnames.ARTIFACTS_BUCKET: ARTIFACTS,
        envnames.MODELS_PREFIX: "models/",
        envnames.ALLOWED_BUCKETS: f"{INPUT},{OUTPUT}",
        envnames.STATE_MACHINE_ARN: TAGGING_ARN,
        envnames.RETRY_STATE_MACHINE_ARN: RETRY_ARN,
        envnames.JOB_QUEUE_ARN: f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/spotbot-queue",
        envnames.SAGEMAKER_ROLE_ARN: ROLE_ARN,
        envnames.IMAGE_URIS: json.dumps(IMAGES),
        envnames.ENDPOINT_INSTANCE_TYPE: "ml.m5.large",
        envnames.ENDPOINT_NAME_PREFIX: "spotbot",
        envnames.DEFAULT_INFERENCE: "in-container",
        envnames.CUSTOM_BOT_COMPUTE: json.dumps(CUSTOM_BOT_COMPUTE),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def deploy_function_resources(
    buckets: tuple[str, ...], machine_arns: tuple[str, ...], prefix: str
) -> dict[str, Any]:
    """What the functions call, in moto (in process or a server, by the environment): buckets,
    state machines with a trivial definition (the tests drive the functions, not the machine)
    and a Batch queue `<prefix>-queue`. The clients, and the queue as created."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = json.dumps({"StartAt": "Go", "States": {"Go": {"Type": "Pass", "End": True}}})
    for arn in machine_arns:
        sfn.create_state_machine(
            name=arn.rsplit(":", 1)[-1],
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{prefix}-states",
        )
    batch = boto3.client("batch", region_name=REGION)
    role = boto3.client("iam").create_role(
        RoleName=f"{prefix}-batch", AssumeRolePolicyDocument="{}"
    )
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"{prefix}-spot",
        type="UNMANAGED",
        state="ENABLED",
        serviceRole=role["Role"]["Arn"],
    )
    queue = batch.create_job_queue(
        jobQueueName=f"{prefix}-queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )
    return {"s3": s3, "stepfunctions": sfn, "batch": batch, "queue": queue}


@pytest.fixture
def aws(cloud_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """moto in process with the deployment's buckets, state machines and Batch queue."""
    import boto3

    with mock_aws(config={"batch": {"use_docker": False}}):
        clients = deploy_function_resources(
            (ARTIFACTS, INPUT, OUTPUT, FOREIGN), (TAGGING_ARN, RETRY_ARN), "spotbot"
        )
        s3, sfn, batch, queue = (
            clients["s3"],
            clients["stepfunctions"],
            clients["batch"],
            clients["queue"],
        )
        assert queue["jobQueueArn"] == cloud_env[envnames.JOB_QUEUE_ARN]
        yield {
            "s3": s3,
            "stepfunctions": sfn,
            "batch": batch,
            "sagemaker": boto3.client("sagemaker", region_name=REGION),
        }
    for name in HANDLERS:
        sys.modules.pop(f"functions.{name}", None)


@pytest.fixture
def load_handler(aws: dict[str, Any]) -> Callable[[str], ModuleType]:
    """Import a handler module afresh (its cold start), inside the mock and this environment."""

    def load(name: str) -> ModuleType:
        sys.modules.pop(f"functions.{name}", None)
        return importlib.import_module(f"functions.{name}")

    return load


@pytest.fixture
def store(aws: dict[str, Any]) -> Any:
    from spotbot.aws.settings import CloudSettings

    return CloudSettings.from_env().open_store()


def api_event(
    kind: str,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """A proxy event of API Gateway REST ("v1") or HTTP API ("v2") from the samples."""
    name = "api_rest_v1.json" if kind == "v1" else "api_http_v2.json"
    event = copy.deepcopy(json.loads((EVENTS / name).read_text()))
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    if kind == "v1":
        event.update(path=path, httpMethod=method, resource=path, body=text)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = (
            {k: [v] for k, v in query.items()} if query else None
        )
        event["requestContext"].update(httpMethod=method, path=f"/v1{path}", resourcePath=path)
    else:
        event.update(rawPath=path, rawQueryString=urlencode(query or {}))
        if query:
            event["queryStringParameters"] = query
        if text is not None:
            event["body"] = text
        event["requestContext"]["http"].update(method=method, path=path)
    return event


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response["body"]) if response.get("body") else None
