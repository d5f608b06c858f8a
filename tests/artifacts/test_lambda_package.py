"""The function package `pulumi up` uploads, tested as Lambda runs it: a fresh interpreter that
sees only the package, the Powertools layer and the runtime's boto3, against moto in server
mode and the OpenSearch stand-in over HTTP."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.lambda_package import UNZIPPED_LIMIT_BYTES, PackageTooLargeError, check_size
from spotbot.aws.settings import CloudSettings
from spotbot.core import envnames
from spotbot.core.records import Result, TaskStatus
from tests.functions.conftest import api_event, deploy_function_resources, response_json
from tests.lambda_support import LambdaRuntime, invoke

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

REGION, ACCOUNT = "us-east-1", "123456789012"
INPUT, OUTPUT, ARTIFACTS = "pkg-in", "pkg-out", "pkg-artifacts"
TAGGING_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:pkg-tagging"
RETRY_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:pkg-retry"
QUEUE_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/pkg-queue"
JOB_DEFINITIONS = {"ocr-zh": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/pkg-ocr-zh:1"}
HANDLERS = ("api", "init", "scan", "endpoint", "finalize", "cleanup", "requeue")


def test_the_package_holds_the_distribution_and_no_more_than_the_handlers_need(
    lambda_package: Any,
) -> None:
    names = zipfile.ZipFile(lambda_package.zip_path).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    # THEN the distribution's metadata is there (entry points resolve), and every handler
    (dist_info,) = [t for t in tops if t.startswith("spotbot-") and t.endswith(".dist-info")]
    entry_points = zipfile.ZipFile(lambda_package.zip_path).read(f"{dist_info}/entry_points.txt")
    assert b"[spotbot.bots]" in entry_points and b"ocr-zh" in entry_points
    assert {f"functions/{h}.py" for h in HANDLERS} <= set(names)
    assert "functions/openapi.json" in names
    # AND what the runtime, the layer, or only the CLI has is left out: no torch either
    for absent in ("boto3", "botocore", "aws_lambda_powertools", "pydantic", "click", "torch"):
        assert absent not in tops, absent
    assert not any(t.startswith(("torch", "transformers", "autogluon", "rapidocr")) for t in tops)
    assert not any(name.startswith("spotbot/bots/data/") for name in names)  # workers' weights
    assert lambda_package.unzipped_bytes < UNZIPPED_LIMIT_BYTES


def test_a_package_over_lambdas_limit_is_an_error_that_says_why() -> None:
    check_size(UNZIPPED_LIMIT_BYTES)
    with pytest.raises(PackageTooLargeError, match="over Lambda's 250 MB"):
        check_size(UNZIPPED_LIMIT_BYTES + 1)


@pytest.fixture
def deployment(aws_env: dict[str, str], osmem_clone: Any) -> dict[str, Any]:
    """Buckets, state machines and a Batch queue in the moto server; the functions' env."""
    clients = deploy_function_resources((INPUT, OUTPUT, ARTIFACTS), (TAGGING_ARN, RETRY_ARN), "pkg")
    s3, sfn = clients["s3"], clients["stepfunctions"]
    env = {
        **aws_env,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "spotbot-test",
        "POWERTOOLS_SERVICE_NAME": "spotbot",
        envnames.OPENSEARCH_ENDPOINT: osmem_clone.url,
        envnames.INDEX_PREFIX: "pkg-",
        envnames.ARTIFACTS_BUCKET: ARTIFACTS,
        envnames.MODELS_PREFIX: "models/",
        envnames.ALLOWED_BUCKETS: f"{INPUT},{OUTPUT}",
        envnames.STATE_MACHINE_ARN: TAGGING_ARN,
        envnames.RETRY_STATE_MACHINE_ARN: RETRY_ARN,
        envnames.JOB_QUEUE_ARN: QUEUE_ARN,
        envnames.SAGEMAKER_ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/pkg-sagemaker",
        envnames.IMAGE_URIS: "{}",
        envnames.ENDPOINT_INSTANCE_TYPE: "ml.m5.large",
        envnames.ENDPOINT_NAME_PREFIX: "pkg",
        envnames.DEFAULT_INFERENCE: "in-container",
    }
    return {"env": env, "s3": s3, "sfn": sfn}


def test_every_handler_imports_from_the_package_alone(
    lambda_package: Any, lambda_runtime: LambdaRuntime, deployment: dict[str, Any]
) -> None:
    # WHEN each handler is imported cold in its own interpreter (its Lambda's cold start)
    for handler in HANDLERS:
        out = invoke(lambda_package, lambda_runtime, deployment["env"], [(handler, {})])
        # THEN it imports (a malformed event is the handler's own error, not an ImportError)
        assert handler in out["imports_ms"]
        result = out["results"][0]
        assert "ModuleNotFoundError" not in json.dumps(result), (handler, result)
        print(f"cold import of functions.{handler}: {out['imports_ms'][handler]:.0f} ms")


def test_a_job_runs_through_the_packaged_handlers(
    lambda_package: Any, lambda_runtime: LambdaRuntime, deployment: dict[str, Any]
) -> None:
    env, s3 = deployment["env"], deployment["s3"]
    for key in ("a.jpg", "b.png", "notes.txt"):
        s3.put_object(Bucket=INPUT, Key=f"photos/{key}", Body=b"x")
    request = {"bot": "ocr-zh", "source": f"s3://{INPUT}/photos/", "output": f"s3://{OUTPUT}/t/"}
    job_id = "job-pkg"
    init_event = {
        "request": {"job_id": job_id, **request, "shards": 2},
        "execution_name": job_id,
        "job_definitions": JOB_DEFINITIONS,
        "limits": {"default_shards": 2, "default_poll_seconds": 1},
    }
    cursor = {"done": False, "continuation_token": None, "pages": 0, "scanned": 0, "accepted": 0}
    # WHEN the API lists bots and starts a job, then init and scan run, as the machine runs them
    out = invoke(
        lambda_package,
        lambda_runtime,
        env,
        [
            ("api", api_event("v1", "GET", "/bots")),
            ("api", api_event("v1", "POST", "/jobs", body=request)),
            ("init", init_event),
            ("scan", {"job_id": job_id, "budget_seconds": 600, "cursor": cursor}),
        ],
    )
    bots, started, plan, scanned = out["results"]
    # THEN the three bots resolve through the distribution's entry points
    assert bots["statusCode"] == 200, bots
    names = {bot["name"] for bot in response_json(bots)["bots"]}
    assert {"ocr-zh", "car-model", "sentiment-zh"} <= names
    # AND POST /jobs started an execution of the tagging machine
    assert started["statusCode"] == 202, started
    executions = deployment["sfn"].list_executions(stateMachineArn=TAGGING_ARN)["executions"]
    assert [e["name"] for e in executions] == [response_json(started)["job_id"]]
    # AND init planned the job, and scan recorded a task per accepted asset
    assert plan["job_id"] == job_id and plan["shards"] == 2, plan
    assert scanned["done"] is True and scanned["accepted"] == 2, scanned

    # GIVEN the workers tagged every task (played here, on the same index)
    store = CloudSettings.from_env(env).open_store()
    for shard in range(2):
        for task in store.claim_tasks(job_id, shard, "test-worker", 100):
            result = Result(job_id, task.key, "ocr-zh", plan["model_version"], TaskStatus.DONE)
            store.complete_tasks([result])
    # WHEN finalize and cleanup run from the package
    cleanup_event = {
        "request": {"job_id": job_id},
        "execution_name": job_id,
        "outcome": {"status": "SUCCEEDED", "failure": {"Error": "", "Cause": ""}},
    }
    out = invoke(
        lambda_package,
        lambda_runtime,
        env,
        [
            ("finalize", {"job_id": job_id, "max_failure_pct": 100.0, "workers": []}),
            ("cleanup", cleanup_event),
        ],
    )
    final, cleaned = out["results"]
    # THEN the summary is written and the job ends SUCCEEDED
    assert final["status"] == "SUCCEEDED" and final["counts"]["done"] == 2, final
    summary = json.loads(
        s3.get_object(Bucket=OUTPUT, Key=f"t/{job_id}/summary.json")["Body"].read()
    )
    assert summary["counts"]["done"] == 2 and summary["counts"]["skipped"] == 1
    assert cleaned["status"] == "SUCCEEDED", cleaned
    assert store.get_job(job_id).status.value == "SUCCEEDED"


def test_the_function_zip_is_what_the_program_uploads(lambda_package: Any) -> None:
    from infra import functions

    archive = functions.code_archive()
    assert Path(archive.path) == lambda_package.zip_path
