"""The real tagging and retry machines, executed by moto with the real handlers and worker inside.

Each test deploys, in moto, what infra deploys (buckets, the Lambda functions, a Batch queue
and job definition, both state machines built by ``workflows.tagging`` for those ARNs),
starts an execution and lets it run: ``functions.*.lambda_handler`` answer every Lambda
task, the Batch worker tags each array child's shard, the index is an osmem-server clone.
See tests/sfn_support.py for the moto patches. Run under .venv-sfn: ``-m stepfunctions``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aws_lambda_powertools")
pytest.importorskip("osmem_server")

from spotbot.core import envnames
from tests import sfn_support as sfn
from tests.conftest import free_port
from tests.functions.conftest import api_event, response_json
from tests.lambda_support import packaged_handler
from workflows import tagging as t

pytestmark = [
    pytest.mark.stepfunctions,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

TAGGING, RETRY = "spotbot-tagging", "spotbot-retry"
ARN_HEAD = f"arn:aws:states:{sfn.REGION}:{sfn.ACCOUNT}:stateMachine:"
QUEUE_ARN = f"arn:aws:batch:{sfn.REGION}:{sfn.ACCOUNT}:job-queue/spotbot-spot"
N_GOOD = 30
GOOD = {f"a{i:03d}.txt": f"asset {i} word word".encode() for i in range(N_GOOD)}
BAD = {f"bad{i}.txt": b"\xff\xfe not utf-8 \xff" for i in range(3)}
SKIPPED = {"skip.jpg": b"not for this bot"}


@dataclass
class Cloud:
    s3: Any
    sfn: Any
    batch: Any
    sagemaker: Any
    store: Any
    lambdas: sfn.Lambdas
    workers: sfn.BatchWorkers
    runtime: sfn.EndpointRuntime
    handlers: dict[str, sfn.Handler]
    refs: t.TaggingRefs

    def put_assets(self, assets: dict[str, bytes]) -> None:
        for key, body in assets.items():
            self.s3.put_object(Bucket=sfn.IN_BUCKET, Key=f"docs/{key}", Body=body)

    def run(self, job_id: str, machine: str = TAGGING, **request: Any) -> dict[str, Any]:
        """Start an execution named after the job, as the API does, and wait for its end."""
        if machine != RETRY:
            request = {
                "job_id": job_id,
                "bot": sfn.BOT,
                "source": f"s3://{sfn.IN_BUCKET}/docs",
                "output": f"s3://{sfn.OUT_BUCKET}/runs",
                "shards": 5,
                "poll_seconds": 1,
                "per_asset_results": True,
                **request,
            }
            name = job_id
        else:
            name = request.pop("execution_name")
        started = self.sfn.start_execution(
            stateMachineArn=ARN_HEAD + machine, name=name, input=json.dumps(request)
        )
        return sfn.wait_for_execution(self.sfn, started["executionArn"])

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = self.handlers["api"](api_event("v1", method, path, body=body))
        return response["statusCode"], response_json(response)

    def tasks(self, job_id: str) -> dict[str, dict[str, Any]]:
        client = self.store._client
        client.indices.refresh(index=self.store.tasks_index)
        hits = client.search(
            index=self.store.tasks_index,
            body={"query": {"term": {"job_id": job_id}}, "size": 1000},
        )["hits"]["hits"]
        keys = Counter(h["_source"]["key"] for h in hits)
        assert max(keys.values()) == 1, f"a key has more than one task: {keys}"
        return {h["_source"]["key"]: h["_source"] for h in hits}

    def result_objects(self, job_id: str) -> list[str]:
        prefix = f"runs/{job_id}/results/"
        return [k[len(prefix) :] for k in sfn.iter_s3_keys(self.s3, sfn.OUT_BUCKET, prefix)]

    def output_json(self, job_id: str, name: str) -> Any:
        body = self.s3.get_object(Bucket=sfn.OUT_BUCKET, Key=f"runs/{job_id}/{name}")["Body"]
        text = body.read().decode()
        return json.loads(text) if name.endswith(".json") else text

    def endpoints_left(self) -> dict[str, list[str]]:
        return {
            "endpoints": [e["EndpointName"] for e in self.sagemaker.list_endpoints()["Endpoints"]],
            "configs": [
                c["EndpointConfigName"]
                for c in self.sagemaker.list_endpoint_configs()["EndpointConfigs"]
            ],
            "models": [m["ModelName"] for m in self.sagemaker.list_models()["Models"]],
        }


def deployment_env(osmem_url: str) -> dict[str, str]:
    """What infra/functions.py gives the functions, pointing at moto and the index stand-in."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": sfn.REGION,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "spotbot-test",
        "POWERTOOLS_SERVICE_NAME": "spotbot",
        envnames.OPENSEARCH_ENDPOINT: osmem_url,
        envnames.INDEX_PREFIX: "spotbot-",
        envnames.ARTIFACTS_BUCKET: sfn.ARTIFACTS,
        envnames.MODELS_PREFIX: "models/",
        envnames.ALLOWED_BUCKETS: f"{sfn.IN_BUCKET},{sfn.OUT_BUCKET}",
        envnames.STATE_MACHINE_ARN: ARN_HEAD + TAGGING,
        envnames.RETRY_STATE_MACHINE_ARN: ARN_HEAD + RETRY,
        envnames.JOB_QUEUE_ARN: QUEUE_ARN,
        envnames.SAGEMAKER_ROLE_ARN: f"arn:aws:iam::{sfn.ACCOUNT}:role/spotbot-sagemaker",
        envnames.IMAGE_URIS: json.dumps({sfn.BOT: sfn.IMAGE}),
        envnames.ENDPOINT_INSTANCE_TYPE: "ml.m5.large",
        envnames.ENDPOINT_NAME_PREFIX: "spotbot",
        envnames.DEFAULT_INFERENCE: "in-container",
    }


def _deploy(env: dict[str, str]) -> t.TaggingRefs:
    """The moto resources of a deployment; the refs of the machines built for them."""
    import boto3

    iam = boto3.client("iam")
    role = iam.create_role(RoleName="spotbot", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    s3 = boto3.client("s3")
    for bucket in (sfn.IN_BUCKET, sfn.OUT_BUCKET, sfn.ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    aws_lambda = boto3.client("lambda")
    arns = {
        name: aws_lambda.create_function(
            FunctionName=f"{sfn.FUNCTION_PREFIX}{name}",
            Runtime="python3.11",
            Role=role,
            Handler=f"functions.{name}.lambda_handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )["FunctionArn"]
        for name in sfn.FUNCTIONS
    }
    batch = boto3.client("batch")
    compute = batch.create_compute_environment(
        computeEnvironmentName="spotbot-spot", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    queue = batch.create_job_queue(
        jobQueueName="spotbot-spot",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": compute["computeEnvironmentArn"]}
        ],
    )["jobQueueArn"]
    assert queue == QUEUE_ARN
    worker_env = {
        k: env[k]
        for k in (envnames.OPENSEARCH_ENDPOINT, envnames.INDEX_PREFIX, envnames.ARTIFACTS_BUCKET)
    }
    definition = batch.register_job_definition(
        jobDefinitionName=f"spotbot-{sfn.BOT}",
        type="container",
        containerProperties={
            "image": sfn.IMAGE,
            "command": ["work"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "2048"},
            ],
            "environment": [{"name": k, "value": v} for k, v in worker_env.items()],
        },
        # Batch retries a child; the fake runs the worker again for each attempt.
        retryStrategy={"attempts": 2},
    )["jobDefinitionArn"]
    refs = t.TaggingRefs(
        partition="aws",
        init_function_arn=arns["init"],
        scan_function_arn=arns["scan"],
        endpoint_function_arn=arns["endpoint"],
        finalize_function_arn=arns["finalize"],
        cleanup_function_arn=arns["cleanup"],
        requeue_function_arn=arns["requeue"],
        job_queue_arn=queue,
        job_definition_arns={sfn.BOT: definition},
        # 5 shards -> two arrays (3 + 2 children): the Map, offsets and indexes all matter.
        max_array_size=3,
        default_shards=4,
        endpoint_poll_seconds=1,
        max_endpoint_polls=5,
        scan_budget_seconds=60,
        scan_timeout_seconds=120,
        lambda_timeout_seconds=60,
        work_timeout_seconds=120,
    )
    states = boto3.client("stepfunctions")
    for name, build in ((TAGGING, t.build_definition), (RETRY, t.build_retry_definition)):
        states.create_state_machine(name=name, definition=json.dumps(build(refs)), roleArn=role)
    return refs


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, osmem_clone: Any) -> Iterator[Cloud]:
    yield from deployed_cloud(monkeypatch, osmem_clone)


def deployed_cloud(monkeypatch: pytest.MonkeyPatch, osmem_clone: Any) -> Iterator[Cloud]:
    """The deployment in moto with its fakes installed (the body of the ``cloud`` fixture,
    which other test modules build their own fixture from)."""
    import boto3
    from moto import mock_aws

    from spotbot.aws.settings import CloudSettings

    for name in [k for k in os.environ if k.startswith(("SPOTBOT_", "AWS_"))]:
        monkeypatch.delenv(name)
    env = deployment_env(osmem_clone.url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sfn.patch_batch_casing(monkeypatch)
    sfn.deploy_test_bot(monkeypatch)
    with mock_aws(config=sfn.MOTO_CONFIG):  # type: ignore[arg-type]
        refs = _deploy(env)
        handlers = sfn.load_handlers()
        lambdas, workers, runtime = sfn.Lambdas(handlers), sfn.BatchWorkers(), sfn.EndpointRuntime()
        for fake in (lambdas, workers, runtime):
            fake.install(monkeypatch)
        store = CloudSettings.from_env().open_store()
        try:
            yield Cloud(
                s3=boto3.client("s3"),
                sfn=boto3.client("stepfunctions"),
                batch=boto3.client("batch"),
                sagemaker=boto3.client("sagemaker"),
                store=store,
                lambdas=lambdas,
                workers=workers,
                runtime=runtime,
                handlers=handlers,
                refs=refs,
            )
        finally:
            store.close()
            sfn.unload_handlers()


def _stats(cloud: Cloud, execution: dict[str, Any]) -> sfn.HistoryStats:
    return sfn.history_stats(sfn.history(cloud.sfn, execution["executionArn"]))


# --- success -------------------------------------------------------------------------------
@pytest.mark.parametrize("inference", ["in-container", "endpoint"])
def test_a_job_tags_every_asset_once_and_succeeds(cloud: Cloud, inference: str) -> None:
    # GIVEN 30 text assets the bot accepts and one image it skips
    cloud.put_assets({**GOOD, **SKIPPED})
    # WHEN a five-shard job runs through the machine
    execution = cloud.run("job-ok", inference=inference)
    # THEN it SUCCEEDS, after init, scan, finalize and cleanup ran in that order
    assert execution["status"] == "SUCCEEDED", (execution, cloud.workers.runs)
    output = json.loads(execution["output"])
    names = cloud.lambdas.names()
    assert names[0] == "init" and names[-2:] == ["finalize", "cleanup"]
    assert names.count("scan") == 1 and all(c.error is None for c in cloud.lambdas.calls)
    assert output["prepare"]["scan"] == {
        "done": True,
        "continuation_token": None,
        "pages": 1,
        "scanned": N_GOOD + 1,
        "accepted": N_GOOD,
    }
    # and two arrays (3 + 2 children) ran the worker once per shard, each exiting 0
    assert output["job"]["chunks"] == [
        {"index": 0, "offset": 0, "size": 3},
        {"index": 1, "offset": 3, "size": 2},
    ]
    assert [w["status"] for w in output["work"]] == ["SUCCEEDED", "SUCCEEDED"]
    runs = sorted((r.job_name, r.index, r.attempt, r.exit_code) for r in cloud.workers.runs)
    assert runs == [("job-ok-w0", i, 1, 0) for i in range(3)] + [
        ("job-ok-w1", i, 1, 0) for i in range(2)
    ]
    # and every asset has exactly one DONE task in the index and one result object in S3
    tasks = cloud.tasks("job-ok")
    assert {k: v["status"] for k, v in tasks.items()} == {
        **dict.fromkeys(GOOD, "DONE"),
        "skip.jpg": "SKIPPED",
    }
    assert {v["shard"] for k, v in tasks.items() if k in GOOD} == set(range(5))
    assert sorted(cloud.result_objects("job-ok")) == sorted(f"{k}.json" for k in GOOD)
    record = cloud.output_json("job-ok", "results/a007.txt.json")
    assert record["status"] == "DONE" and record["tags"][0]["label"] == "word"
    assert record["model_version"] == output["job"]["model_version"] == "words-1"
    # and the job's summary and result manifest are in the output, the record SUCCEEDED
    summary = cloud.output_json("job-ok", "summary.json")
    assert summary["status"] == "SUCCEEDED" and summary["counts"]["done"] == N_GOOD
    lines = [json.loads(x) for x in cloud.output_json("job-ok", "results.jsonl").splitlines()]
    assert {x["key"]: x["status"] for x in lines} == {
        **dict.fromkeys(GOOD, "DONE"),
        "skip.jpg": "SKIPPED",
    }
    assert len(lines) == N_GOOD + 1
    assert output["finalize"]["counts"]["done"] == N_GOOD
    assert output["finalize"]["counts"]["failed"] == 0
    assert output["cleanup"]["status"] == "SUCCEEDED"
    assert str(cloud.store.get_job("job-ok").status) == "SUCCEEDED"
    # and in endpoint mode the workers went through the endpoint, which is gone afterwards
    if inference == "endpoint":
        assert cloud.runtime.requests > 0 and output["prepare"]["endpoint_name"]
        assert output["cleanup"]["endpoint_deleted"] is True
    else:
        assert cloud.runtime.requests == 0 and output["prepare"]["endpoint_name"] == ""
    assert cloud.endpoints_left() == {"endpoints": [], "configs": [], "models": []}
    assert _stats(cloud, execution).max_state_bytes < t.STATE_PAYLOAD_BUDGET


# --- failure paths: each ends FAILED (or CANCELLED) with a readable cause, nothing left up ------
def _assert_failed_readably(
    cloud: Cloud, job_id: str, execution: dict[str, Any], error: str, status: str = "FAILED"
) -> str:
    """The execution failed with ``error``; cleanup ran last, set the record, left no endpoint."""
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == error, execution
    cause = execution["cause"]
    assert cause and "Traceback" not in cause and not cause.startswith("{"), cause
    assert cloud.lambdas.names()[-1] == "cleanup"
    job = cloud.store.get_job(job_id)
    assert str(job.status) == status and job.error == cause and job.finished_at
    assert cloud.endpoints_left() == {"endpoints": [], "configs": [], "models": []}
    return str(cause)


def _endpoint_fails_to_come_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """SageMaker creates the endpoint, reports Creating, then Failed (a bad image, say)."""
    from moto.sagemaker.models import SageMakerModelBackend

    statuses = iter(["Creating", "Failed"])
    describe = SageMakerModelBackend.describe_endpoint

    def scripted(backend: Any, endpoint_name: str) -> dict[str, Any]:
        if endpoint_name in backend.endpoints:
            backend.endpoints[endpoint_name].endpoint_status = next(statuses, "Failed")
        return describe(backend, endpoint_name)

    monkeypatch.setattr(SageMakerModelBackend, "describe_endpoint", scripted)


def _create_endpoint_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    def refuse(backend: Any, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError(message="The account-level service limit for ml.m5.large is 0.")

    monkeypatch.setattr(SageMakerModelBackend, "create_endpoint", refuse)


@pytest.mark.parametrize(
    ("break_endpoint", "error", "cause"),
    [
        (_endpoint_fails_to_come_up, "Spotbot.EndpointFailed", "did not reach InService"),
        (
            _create_endpoint_raises,
            "Spotbot.EndpointStepFailed",
            "could not create or reuse endpoint spotbot-words-words-1: ValidationException",
        ),
    ],
)
def test_an_endpoint_that_fails_fails_the_job_and_is_deleted(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, break_endpoint: Any, error: str, cause: str
) -> None:
    # GIVEN an endpoint-mode job whose endpoint will not come up
    cloud.put_assets(GOOD)
    break_endpoint(monkeypatch)
    # WHEN the job runs
    execution = cloud.run("job-ep", inference="endpoint")
    # THEN it fails with the endpoint's error before any worker ran, and nothing is left up
    assert cause in _assert_failed_readably(cloud, "job-ep", execution, error)
    assert cloud.workers.runs == [] and "finalize" not in cloud.lambdas.names()
    assert "endpoint" in cloud.lambdas.names()


# moto 5.2.5's .sync task starts a callback-listener thread that fails on its own timeout
# value (a dict compared with 0) when a Map is failed under it; the execution is unaffected.
moto_sync_thread_bug = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnhandledThreadExceptionWarning"
)


@moto_sync_thread_bug
def test_a_worker_that_fails_every_attempt_fails_the_job(cloud: Cloud) -> None:
    # GIVEN an endpoint-mode job whose endpoint answers like a container that is not spotbot's
    cloud.put_assets(GOOD)
    cloud.runtime.broken = True
    # WHEN the job runs
    # (3 shards: one array, so no sibling array races the cleanup that follows its failure)
    execution = cloud.run("job-wf", inference="endpoint", shards=3)
    # THEN every attempt of every child failed, a child being retried as the job definition's
    # retryStrategy says
    worked = [r for r in cloud.workers.runs if not r.reason.startswith("job is ")]
    assert worked and all(r.exit_code != 0 for r in worked)
    assert all("answered in an unknown format" in r.reason for r in worked)
    assert max(Counter((r.job_name, r.index) for r in worked).values()) == 2
    # and the job failed with the Batch job's reason, the endpoint deleted, no asset tagged
    cause = _assert_failed_readably(cloud, "job-wf", execution, "Spotbot.WorkerArrayFailed")
    assert cause.startswith("Batch job job-wf-w") and "FAILED: Array Child Job failed" in cause
    assert "array children failed" in cause
    assert "finalize" not in cloud.lambdas.names()
    assert cloud.result_objects("job-wf") == []
    # nothing was tagged; a task can still be RUNNING when a sibling worker was terminated by
    # cleanup mid-batch (a retry reclaims it), but none is DONE or FAILED
    assert {v["status"] for v in cloud.tasks("job-wf").values()} <= {"PENDING", "RUNNING"}


def _run_over_the_threshold(cloud: Cloud, job_id: str) -> dict[str, Any]:
    cloud.put_assets({**GOOD, **BAD})
    return cloud.run(job_id, max_failure_pct=5)


def test_crossing_the_failure_threshold_fails_the_job(cloud: Cloud) -> None:
    # GIVEN 30 good assets and 3 that cannot be decoded, at most 5 % may fail
    # WHEN the job runs
    execution = _run_over_the_threshold(cloud, "job-th")
    # THEN the workers tagged what they could, failed the rest, and finalize failed the job
    cause = _assert_failed_readably(cloud, "job-th", execution, "Spotbot.FailureThresholdExceeded")
    assert "3 of 33 assets failed" in cause
    tasks = cloud.tasks("job-th")
    assert {k for k, v in tasks.items() if v["status"] == "DONE"} == set(GOOD)
    assert all(tasks[k]["status"] == "FAILED" and "not UTF-8" in tasks[k]["error"] for k in BAD)
    assert sorted(cloud.result_objects("job-th")) == sorted(f"{k}.json" for k in GOOD)
    summary = cloud.output_json("job-th", "summary.json")
    assert summary["status"] == "FAILED" and summary["counts"]["failed"] == len(BAD)
    assert all(r.exit_code == 0 for r in cloud.workers.runs), "bad assets never fail a worker"


@moto_sync_thread_bug
def test_cancel_while_workers_run_cancels_the_job(cloud: Cloud) -> None:
    # GIVEN an endpoint-mode job, and a user who cancels it through the API once a worker ran
    cloud.put_assets(GOOD)
    answers: list[tuple[int, Any]] = []

    def cancel_before_second_child(job_name: str, index: int, attempt: int) -> None:
        if job_name == "job-cx-w0" and index == 1 and not answers:
            answers.append(cloud.api("DELETE", "/jobs/job-cx"))

    cloud.workers.before_child = cancel_before_second_child
    # WHEN the job runs
    execution = cloud.run("job-cx", inference="endpoint")
    # THEN the API accepted the cancel and terminated the running array
    status, body = answers[0]
    assert status == 202 and body["status"] == "CANCELLING" and body["terminated"] >= 1
    assert ("job-cx-w0", 1) not in {(r.job_name, r.index) for r in cloud.workers.runs}
    # and the array failed, cleanup deleted the endpoint and set CANCELLED, nothing finalized
    _assert_failed_readably(cloud, "job-cx", execution, "Spotbot.JobCancelled", "CANCELLED")
    assert execution["cause"] == "The job was cancelled."
    assert json.loads(execution["input"])["job_id"] == "job-cx"
    assert "finalize" not in cloud.lambdas.names()
    assert cloud.api("GET", "/jobs/job-cx")[1]["status"] == "CANCELLED"


@moto_sync_thread_bug
def test_cancel_while_the_endpoint_comes_up_starts_no_tagging(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an endpoint-mode job whose endpoint is still Creating when the user cancels it
    from moto.sagemaker.models import SageMakerModelBackend

    cloud.put_assets(GOOD)
    answers: list[tuple[int, Any]] = []
    describe = SageMakerModelBackend.describe_endpoint

    def creating_then_in_service(backend: Any, endpoint_name: str) -> dict[str, Any]:
        if endpoint_name in backend.endpoints:
            if not answers:
                backend.endpoints[endpoint_name].endpoint_status = "Creating"
                answers.append(cloud.api("DELETE", "/jobs/job-cw"))
            else:
                backend.endpoints[endpoint_name].endpoint_status = "InService"
        return describe(backend, endpoint_name)

    monkeypatch.setattr(SageMakerModelBackend, "describe_endpoint", creating_then_in_service)
    # WHEN the job runs on (there was no Batch job yet for the cancel to terminate)
    execution = cloud.run("job-cw", inference="endpoint")
    # THEN the workers that started afterwards tagged nothing and finalize did not run to the
    # end: cleanup deleted the endpoint and the job ended CANCELLED
    assert answers and answers[0][0] == 202 and answers[0][1]["terminated"] == 0
    assert cloud.workers.runs and all(
        r.exit_code == 0 and r.reason == "job was cancelled" for r in cloud.workers.runs
    )
    _assert_failed_readably(cloud, "job-cw", execution, "Spotbot.JobCancelled", "CANCELLED")
    assert cloud.result_objects("job-cw") == []
    assert {v["status"] for v in cloud.tasks("job-cw").values()} == {"PENDING"}
    assert cloud.api("GET", "/jobs/job-cw")[1]["status"] == "CANCELLED"


# --- retry of failed assets ---------------------------------------------------------------------
def test_retry_requeues_failed_assets_and_finishes_the_job(cloud: Cloud) -> None:
    # GIVEN a job that failed its threshold with 3 undecodable assets, which the user then fixed
    assert _run_over_the_threshold(cloud, "job-rt")["status"] == "FAILED"
    first_runs = len(cloud.workers.runs)
    cloud.put_assets({key: b"fixed words" for key in BAD})
    # WHEN the retry is asked for through the API (it starts the retry machine)
    status, body = cloud.api("POST", "/jobs/job-rt/retry", {})
    assert status == 202 and body["execution_name"] == "job-rt-retry1" and body["failed"] == 3
    arn = f"arn:aws:states:{sfn.REGION}:{sfn.ACCOUNT}:execution:{RETRY}:job-rt-retry1"
    execution = sfn.wait_for_execution(cloud.sfn, arn)
    # THEN the failed tasks were requeued, the workers ran again over every shard, and it SUCCEEDS
    assert execution["status"] == "SUCCEEDED", (execution, cloud.workers.runs[first_runs:])
    output = json.loads(execution["output"])
    assert output["job"]["requeued"] == 3 and output["prepare"]["scan"] == {"accepted": 3}
    again = cloud.workers.runs[first_runs:]
    assert len(again) == 5 and all(r.exit_code == 0 for r in again)
    assert cloud.lambdas.names()[-3:] == ["requeue", "finalize", "cleanup"]
    tasks = cloud.tasks("job-rt")
    assert {v["status"] for v in tasks.values()} == {"DONE"} and len(tasks) == 33
    assert all(tasks[k]["attempts"] == 1 for k in GOOD), "done assets were not redone"
    assert sorted(cloud.result_objects("job-rt")) == sorted(f"{k}.json" for k in {**GOOD, **BAD})
    assert cloud.output_json("job-rt", "results/bad1.txt.json")["tags"][0]["label"] == "fixed"
    summary = cloud.output_json("job-rt", "summary.json")
    assert summary["status"] == "SUCCEEDED" and summary["counts"]["done"] == 33
    assert str(cloud.store.get_job("job-rt").status) == "SUCCEEDED"


# --- scale, in simulation and on paper ------------------------------------------------------------
KEYS_PER_PAGE = 1000  # S3 ListObjectsV2's page
STANDARD_HISTORY_LIMIT = 25_000  # events in one Standard execution's history
#: (assets, pages each scan call lists): what moto can execute here in seconds.
SCALES = [(10_000, 1), (100_000, 1), (1_000_000, 10), (10_000_000, 100)]


def _simulated_handlers(assets: int, pages_per_call: int) -> dict[str, sfn.Handler]:
    """The contract's answers for a source of ``assets`` keys, with no object behind them."""
    total_pages = -(-assets // KEYS_PER_PAGE)
    shards = min(max(2, assets // 100), 100_000)

    def init(event: Event) -> Event:
        return {
            "job_id": event["request"]["job_id"],
            "bot": sfn.BOT,
            "model_version": "words-1",
            "inference": "in-container",
            "job_definition": event["job_definitions"][sfn.BOT],
            "shards": shards,
            "chunks": t.plan_chunks(shards, event["limits"]["max_array_size"]),
            "max_failure_pct": 100.0,
            "poll_seconds": 0,
        }

    def scan(event: Event) -> Event:
        pages = min(event["cursor"]["pages"] + pages_per_call, total_pages)
        listed = min(pages * KEYS_PER_PAGE, assets)
        done = pages == total_pages
        return {
            "done": done,
            # S3 tokens are opaque and ~100-200 bytes; 1,024 is the worst case we budget for
            "continuation_token": None if done else "t" * 1024,
            "pages": pages,
            "scanned": listed,
            "accepted": listed,
        }

    def finalize(event: Event) -> Event:
        counts = {"total": assets, "done": assets, "failed": 0, "skipped": 0}
        return {
            "status": "SUCCEEDED",
            "error": "",
            "cause": "",
            "counts": {**counts, "pending": 0, "running": 0},
            "failed_pct": 0.0,
            "summary_uri": f"s3://{sfn.OUT_BUCKET}/runs/{event['job_id']}/summary.json",
        }

    def cleanup(event: Event) -> Event:
        return {
            "job_id": event["request"]["job_id"],
            "status": "SUCCEEDED",
            "error": "",
            "cause": "",
            "endpoint_deleted": False,
        }

    return {"init": init, "scan": scan, "finalize": finalize, "cleanup": cleanup}


Event = dict[str, Any]


def _without_array_children(monkeypatch: pytest.MonkeyPatch, sizes: list[int]) -> None:
    """Submit arrays as single jobs: moto would build 10,000 child objects per array."""
    from moto.batch_simple.models import BatchSimpleBackend

    submit = BatchSimpleBackend.submit_job

    def submit_parent_only(backend: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(int(kwargs["array_properties"].get("size", 0)))
        return submit(backend, *args, **{**kwargs, "array_properties": {}})

    monkeypatch.setattr(BatchSimpleBackend, "submit_job", submit_parent_only)


def test_state_data_and_history_grow_with_pages_and_arrays_not_assets(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import time
    from pathlib import Path

    # GIVEN the tagging machine with the production array limits, over simulated sources
    refs = dataclasses.replace(cloud.refs, max_array_size=10_000, max_shards=100_000)
    machine = "spotbot-scale"
    cloud.sfn.create_state_machine(
        name=machine,
        definition=json.dumps(t.build_definition(refs)),
        roleArn=f"arn:aws:iam::{sfn.ACCOUNT}:role/spotbot",
    )
    sizes: list[int] = []
    _without_array_children(monkeypatch, sizes)
    cloud.workers.run_child = lambda env: (0, "simulated")
    rows = []
    for assets, pages_per_call in SCALES:
        # WHEN a job over that many assets runs, its scan listing pages_per_call pages a call
        cloud.lambdas.handlers.update(_simulated_handlers(assets, pages_per_call))
        cloud.lambdas.calls.clear()
        sizes.clear()
        began = time.perf_counter()
        execution = cloud.run(f"job-{assets}", machine=machine)
        seconds = time.perf_counter() - began
        assert execution["status"] == "SUCCEEDED", execution
        stats = _stats(cloud, execution)
        output = json.loads(execution["output"])
        rows.append(
            {
                "assets": assets,
                "pages": -(-assets // KEYS_PER_PAGE),
                "pages_per_scan_call": pages_per_call,
                "scan_calls": cloud.lambdas.names().count("scan"),
                "shards": output["job"]["shards"],
                "arrays": len(sizes),
                "history_events": stats.events,
                "state_transitions": stats.state_transitions,
                "max_state_input_bytes": stats.max_input_bytes,
                "max_state_output_bytes": stats.max_output_bytes,
                "moto_seconds": round(seconds, 2),
            }
        )
        # THEN every state's data stays under 32 KB, the arrays cover the shards
        assert stats.max_state_bytes < t.STATE_PAYLOAD_BUDGET, rows[-1]
        assert (
            sum(sizes) == output["job"]["shards"] and output["finalize"]["counts"]["done"] == assets
        )
    # and history is linear in scan calls and arrays: a fixed part, so much per call and per array
    per_call, per_array, fixed = _fit(rows)
    for row in rows:
        predicted = fixed + per_call * row["scan_calls"] + per_array * row["arrays"]
        assert row["history_events"] == predicted, (row, per_call, per_array, fixed)
    assert rows[-1]["max_state_output_bytes"] - rows[0]["max_state_output_bytes"] < 2048
    # ON PAPER, 10 million assets: 10,000 pages and 10 arrays (100,000 shards)
    pages, arrays = 10_000, 10
    one_page_a_call = fixed + per_call * pages + per_array * arrays
    calls_allowed = (STANDARD_HISTORY_LIMIT - fixed - per_array * arrays) // per_call
    paper = {
        "assets": 10_000_000,
        "pages": pages,
        "arrays": arrays,
        "history_events_per_scan_call": per_call,
        "history_events_per_array": per_array,
        "history_events_fixed": fixed,
        "history_events_at_one_page_per_call": one_page_a_call,
        "standard_history_limit": STANDARD_HISTORY_LIMIT,
        "max_scan_calls_within_limit": calls_allowed,
        "min_pages_per_scan_call": -(-pages // calls_allowed),
    }
    assert one_page_a_call > STANDARD_HISTORY_LIMIT, "one page a call would not fit"
    assert paper["min_pages_per_scan_call"] <= 10
    report = {"measured": rows, "ten_million_on_paper": paper}
    out = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "state_machine_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _fit(rows: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Events = fixed + per_call * calls + per_array * arrays, solved from rows that differ."""
    a = next(
        r
        for r in rows
        if r["arrays"] == rows[0]["arrays"] and r["scan_calls"] != rows[0]["scan_calls"]
    )
    per_call = (a["history_events"] - rows[0]["history_events"]) // (
        a["scan_calls"] - rows[0]["scan_calls"]
    )
    b = next(r for r in rows if r["arrays"] != rows[0]["arrays"])
    per_array = (
        b["history_events"]
        - rows[0]["history_events"]
        - per_call * (b["scan_calls"] - rows[0]["scan_calls"])
    ) // (b["arrays"] - rows[0]["arrays"])
    fixed = (
        rows[0]["history_events"] - per_call * rows[0]["scan_calls"] - per_array * rows[0]["arrays"]
    )
    return per_call, per_array, fixed


# --- the way the README tells users to run it: the real AWS CLI ---------------------------------
def test_the_aws_cli_runs_a_job_end_to_end_on_the_built_function_package(
    cloud: Cloud, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    # GIVEN the deployment behind a moto server, its functions running from the built package
    # (each invoke a cold interpreter that sees only the package, Lambda's boto3 and the
    # Powertools layer, plus the deployed test bot's distribution), and a user's folder
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    lambda_env = {
        **deployment_env(os.environ[envnames.OPENSEARCH_ENDPOINT]),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    bot_dist = _words_bot_distribution(tmp_path / "bot-layer")
    packaged_calls: list[str] = []

    def from_package(name: str) -> sfn.Handler:
        handler = packaged_handler(name, lambda_env, (bot_dist,))

        def call(event: sfn.Event) -> Any:
            packaged_calls.append(name)
            return handler(event)

        return call

    for name in sfn.FUNCTIONS:
        cloud.lambdas.handlers[name] = from_package(name)
    folder = tmp_path / "docs"
    folder.mkdir()
    for key, data in {**GOOD, **SKIPPED}.items():
        (folder / key).write_bytes(data)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": sfn.REGION,
    }

    def aws(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "awscli", "--endpoint-url", f"http://127.0.0.1:{port}", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (args, result.stderr[-2000:])
        return result.stdout

    try:
        # WHEN the user uploads the folder and starts an execution as the README shows
        aws("s3", "cp", "--recursive", "--quiet", str(folder), f"s3://{sfn.IN_BUCKET}/docs/")
        request = {
            "bot": sfn.BOT,
            "source": f"s3://{sfn.IN_BUCKET}/docs/",
            "output": f"s3://{sfn.OUT_BUCKET}/runs/",
            "shards": 3,
        }
        started = json.loads(
            aws(
                "stepfunctions",
                "start-execution",
                "--state-machine-arn",
                ARN_HEAD + TAGGING,
                "--name",
                "job-cli",
                "--input",
                json.dumps(request),
            )
        )
        deadline = time.monotonic() + 120
        while True:
            described = json.loads(
                aws(
                    "stepfunctions",
                    "describe-execution",
                    "--execution-arn",
                    started["executionArn"],
                )
            )
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # and asks the API (its Lambda function, with a REST event) how the job went
        event = tmp_path / "event.json"
        event.write_text(json.dumps(api_event("v1", "GET", "/jobs/job-cli")))
        answer = tmp_path / "answer.json"
        aws(
            "lambda",
            "invoke",
            "--function-name",
            "spotbot-api",
            "--payload",
            f"fileb://{event}",
            str(answer),
        )
        results = aws("s3", "cp", f"s3://{sfn.OUT_BUCKET}/runs/job-cli/results.jsonl", "-")
    finally:
        server.stop()
    # THEN the execution SUCCEEDED, every function having run from the package
    assert described["status"] == "SUCCEEDED", described
    assert packaged_calls[0] == "init" and packaged_calls[-1] == "api", packaged_calls
    assert {"scan", "finalize", "cleanup"} <= set(packaged_calls)
    # AND the API reports the job SUCCEEDED with every asset done
    response = json.loads(answer.read_text())
    assert response["statusCode"] == 200, response
    job = json.loads(response["body"])
    assert job["status"] == "SUCCEEDED" and job["counts"]["done"] == N_GOOD, job
    # AND every asset has exactly one result, with real tags from the bot
    lines = [json.loads(line) for line in results.splitlines()]
    assert sorted(x["key"] for x in lines) == sorted([*GOOD, *SKIPPED])
    for line in lines:
        if line["key"] in GOOD:
            assert line["status"] == "DONE" and line["tags"][0]["label"] == "word", line


def _words_bot_distribution(folder: Path) -> Path:
    """The test bot as a third-party distribution: a module and its `spotbot.bots` entry point."""
    package = folder / "spotbot_words"
    package.mkdir(parents=True)
    source = Path(sfn.__file__).with_name("fakebots.py")
    (package / "__init__.py").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    dist_info = folder / "spotbot_words-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: spotbot-words\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[spotbot.bots]\n{sfn.BOT} = spotbot_words:WordsBot\n"
    )
    return folder
