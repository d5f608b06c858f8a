"""The Batch worker: params from the environment, EndpointBot, and `spotbot work` end to end.

End-to-end tests run the real `spotbot work` process against a moto S3 server and an
osmem-server (the OpenSearch stand-in), in both inference modes: in-container (the bot
loaded in the worker, its model downloaded from the S3 registry) and endpoint (a real
`spotbot serve` process behind a loopback stand-in for the SageMaker runtime API).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spotbot.core import envnames
from spotbot.core.errors import AssetError, BotUnavailableError
from spotbot.core.records import Job, Task, TaskStatus
from spotbot.core.worker import ShardWorker, WorkerConfig
from spotbot.entry.batch_worker import EXIT_DONE, EXIT_STOPPED, WorkerParams
from tests.conftest import REPO, base_env, free_port
from tests.fakebots import WordsBot

BOT_SPEC = "tests.fakebots:WordsBot"
IN_BUCKET, OUT_BUCKET, ARTIFACTS = "spotbot-in", "spotbot-out", "spotbot-artifacts"


# -- unit: params -------------------------------------------------------------------------
def test_shard_is_offset_plus_array_index() -> None:
    env = {
        envnames.JOB_ID: "job-1",
        envnames.SHARD_OFFSET: "1000",
        envnames.AWS_BATCH_JOB_ARRAY_INDEX: "7",
        envnames.AWS_BATCH_JOB_ATTEMPT: "2",
        envnames.INFERENCE: "endpoint",
        envnames.ENDPOINT_NAME: "ep",
    }
    params = WorkerParams.from_env(env)
    assert (params.job_id, params.shard, params.attempt) == ("job-1", 1007, 2)
    assert (params.inference, params.endpoint_name) == ("endpoint", "ep")


def test_flags_override_the_environment() -> None:
    env = {envnames.JOB_ID: "job-1", envnames.AWS_BATCH_JOB_ARRAY_INDEX: "3"}
    params = WorkerParams.from_env(env, job_id="job-2", shard=0, inference=None)
    assert (params.job_id, params.shard, params.inference) == ("job-2", 0, "in-container")


@pytest.mark.parametrize(
    "env",
    [
        {},
        {envnames.JOB_ID: "j", envnames.INFERENCE: "gpu"},
        {envnames.JOB_ID: "j", envnames.SHARD_OFFSET: "x"},
    ],
)
def test_bad_environment_is_a_config_error(env: dict[str, str]) -> None:
    from spotbot.aws.settings import ConfigError

    with pytest.raises(ConfigError):
        WorkerParams.from_env(env)


# -- unit: EndpointBot --------------------------------------------------------------------
class _Runtime:
    """A sagemaker-runtime client double that answers like `spotbot serve` (WordsBot inside)."""

    def __init__(self, fail_with: Exception | None = None):
        self.bodies: list[dict[str, Any]] = []
        self.fail_with = fail_with
        self.bot = WordsBot()
        self.bot.load(_builtin())

    def invoke_endpoint(self, **kw: Any) -> dict[str, Any]:
        if self.fail_with:
            raise self.fail_with
        body = json.loads(kw["Body"])
        self.bodies.append(body)
        out = []
        for inst in body["instances"]:
            text = base64.b64decode(inst["b64"]).decode()
            try:
                out.append(self.bot.predict([text])[0])
            except RuntimeError as exc:
                out.append({"error": f"bot error: {exc}"})
        return {"Body": io.BytesIO(json.dumps({"predictions": out}).encode())}


def _builtin() -> Any:
    from spotbot.core.artifacts import ModelRef

    return ModelRef("words", "words-1", None, "test")


def _endpoint_bot(runtime: Any, max_request_bytes: int = 6_000_000) -> Any:
    from spotbot.aws.endpoint_bot import EndpointBot

    return EndpointBot(WordsBot(), "ep", client=runtime, max_request_bytes=max_request_bytes)


def test_endpoint_bot_sends_json_batches_within_the_size_limit() -> None:
    runtime = _Runtime()
    bot = _endpoint_bot(runtime, max_request_bytes=400)
    items = [bot.decode(f"word {i} ".encode() * 20, f"k{i}.txt") for i in range(5)]
    predictions = bot.predict(items)
    assert [p["tags"][0]["label"] for p in predictions] == ["word"] * 5
    assert len(runtime.bodies) > 1, "400-byte requests cannot hold five 160-byte assets"
    assert [i["key"] for b in runtime.bodies for i in b["instances"]] == [
        f"k{i}.txt" for i in range(5)
    ]
    assert bot.name == "words" and bot.batch_size == WordsBot.batch_size


def test_endpoint_bot_decodes_locally_and_fails_bad_assets_there() -> None:
    runtime = _Runtime()
    bot = _endpoint_bot(runtime, max_request_bytes=400)
    with pytest.raises(AssetError, match="not UTF-8"):
        bot.decode(b"\xff\xfe", "bad.txt")
    with pytest.raises(AssetError, match="too large for the endpoint"):
        bot.decode(b"x" * 400, "big.txt")
    assert runtime.bodies == []


def test_endpoint_bot_per_item_error_fails_only_that_item_in_the_worker(tmp_path: Path) -> None:
    # GIVEN a shard with one asset the model crashes on, tagged through the endpoint
    store, job, worker = _local_worker(tmp_path, _endpoint_bot(_Runtime()), ["ok one", "CRASH"])
    # WHEN the worker runs
    stats = worker.run()
    # THEN only the crashing asset failed, with the endpoint's message
    results = {r.key: r for r in store.iter_results(job.id)}
    assert (stats.done, stats.failed) == (1, 1)
    assert results["a1.txt"].error == "bot error: the model fell over"


def test_endpoint_outage_stops_the_worker_and_hands_tasks_back(tmp_path: Path) -> None:
    from botocore.exceptions import EndpointConnectionError

    runtime = _Runtime(fail_with=EndpointConnectionError(endpoint_url="http://x"))
    store, job, worker = _local_worker(tmp_path, _endpoint_bot(runtime), ["a", "b", "c"])
    with pytest.raises(BotUnavailableError, match="cannot be reached"):
        worker.run()
    counts = store.count_tasks(job.id)
    assert counts[TaskStatus.PENDING] == 3, counts
    assert counts[TaskStatus.FAILED] == 0


def _local_worker(tmp_path: Path, bot: Any, texts: list[str]) -> tuple[Any, Job, ShardWorker]:
    from spotbot.core.sinks import LocalSink
    from spotbot.core.sources import LocalSource
    from spotbot.core.sqlite_store import SqliteTaskStore

    src = tmp_path / "src"
    src.mkdir()
    for i, text in enumerate(texts):
        (src / f"a{i}.txt").write_text(text)
    store = SqliteTaskStore(tmp_path / "db.sqlite3")
    job = store.create_job(Job(id="job-1", bot="words", source=str(src), output=str(tmp_path)))
    store.put_tasks([Task(job_id=job.id, key=f"a{i}.txt") for i in range(len(texts))])
    worker = ShardWorker(
        store, LocalSource(src), LocalSink(tmp_path / "out"), bot, job, 0, "w", WorkerConfig()
    )
    return store, job, worker


# -- end to end ---------------------------------------------------------------------------
N_ASSETS = 40
BAD = {"bad.txt": b"\xff\xfe not utf-8 \xff", "crash.txt": b"this one will CRASH the model"}


@pytest.fixture
def cloud(aws_env: dict[str, str], osmem_clone: Any, tmp_path: Path) -> dict[str, Any]:
    """Buckets with assets, a store, and the env a Batch child would get (minus job vars)."""
    import boto3

    s3 = boto3.client("s3")
    for bucket in (IN_BUCKET, OUT_BUCKET, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    for i in range(N_ASSETS):
        s3.put_object(
            Bucket=IN_BUCKET, Key=f"docs/a{i:03d}.txt", Body=f"asset {i} word word".encode()
        )
    for key, body in BAD.items():
        s3.put_object(Bucket=IN_BUCKET, Key=f"docs/{key}", Body=body)
    s3.put_object(Bucket=IN_BUCKET, Key="docs/skip.jpg", Body=b"not for this bot")
    env = base_env(
        **aws_env,
        **{
            envnames.OPENSEARCH_ENDPOINT: osmem_clone.url,
            envnames.ARTIFACTS_BUCKET: ARTIFACTS,
            "SPOTBOT_MODEL_CACHE": str(tmp_path / "cache"),
        },
    )
    return {"s3": s3, "env": env, "url": osmem_clone.url, "tmp": tmp_path}


def _create_job(cloud: dict[str, Any], job_id: str, shards: int) -> Job:
    from spotbot.aws.locations import open_sink, open_source
    from spotbot.aws.model_registry import S3ModelRegistry
    from spotbot.aws.opensearch_store import OpenSearchTaskStore
    from spotbot.core.steps import init_job, scan_job

    with OpenSearchTaskStore(cloud["url"]) as store:
        job = init_job(
            store,
            S3ModelRegistry(ARTIFACTS),
            bot=BOT_SPEC,
            source=open_source(f"s3://{IN_BUCKET}/docs"),
            sink=open_sink(f"s3://{OUT_BUCKET}/runs"),
            shards=shards,
            job_id=job_id,
            per_asset_results=True,
        )
        scan_job(store, job, open_source(job.source))
        return store.get_job(job.id)


def _start_worker(
    cloud: dict[str, Any],
    job: Job,
    index: int,
    attempt: int = 1,
    args: tuple[str, ...] = (),
    **extra: str,
) -> subprocess.Popen[str]:
    env = dict(cloud["env"])
    env.update(
        {
            envnames.JOB_ID: job.id,
            envnames.BOT: job.bot,
            envnames.MODEL_VERSION: job.model_version or "",
            envnames.SHARD_OFFSET: "0",
            envnames.AWS_BATCH_JOB_ARRAY_INDEX: str(index),
            envnames.AWS_BATCH_JOB_ATTEMPT: str(attempt),
            envnames.INFERENCE: "in-container",
            envnames.ENDPOINT_NAME: "",
        }
    )
    env.update(extra)
    return subprocess.Popen(
        [sys.executable, "-m", "spotbot", "work", "--page-size", "16", "--threads", "1", *args],
        env=env,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, list[dict[str, Any]]]:
    _, err = proc.communicate(timeout=timeout)
    lines = []
    for line in err.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}\n{err}")
    return proc.returncode, lines


def _tasks(url: str, job_id: str) -> dict[str, dict[str, Any]]:
    from spotbot.aws.opensearch_store import OpenSearchTaskStore

    with OpenSearchTaskStore(url) as store:
        store._client.indices.refresh(index=store.tasks_index)
        hits = store._client.search(
            index=store.tasks_index,
            body={"query": {"term": {"job_id": job_id}}, "size": 1000},
        )["hits"]["hits"]
    return {h["_source"]["key"]: h["_source"] for h in hits}


def _result_objects(s3: Any, job_id: str) -> list[str]:
    prefix = f"runs/{job_id}/results/"
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=OUT_BUCKET, Prefix=prefix):
        keys += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
    return keys


def _assert_complete(
    cloud: dict[str, Any], job: Job, crash_error: str
) -> dict[str, dict[str, Any]]:
    tasks = _tasks(cloud["url"], job.id)
    good = {f"a{i:03d}.txt" for i in range(N_ASSETS)}
    statuses = {k: t["status"] for k, t in tasks.items()}
    assert {k for k, s in statuses.items() if s == "DONE"} == good, statuses
    assert statuses["bad.txt"] == "FAILED" and "not UTF-8" in tasks["bad.txt"]["error"]
    assert statuses["crash.txt"] == "FAILED" and tasks["crash.txt"]["error"] == crash_error
    assert statuses["skip.jpg"] == "SKIPPED"
    # exactly one result object per tagged asset, nothing else under results/
    objects = _result_objects(cloud["s3"], job.id)
    assert sorted(objects) == sorted(f"{k}.json" for k in good)
    body = cloud["s3"].get_object(Bucket=OUT_BUCKET, Key=f"runs/{job.id}/results/a001.txt.json")
    record = json.loads(body["Body"].read())
    assert record["status"] == "DONE" and record["tags"][0]["label"] == "word"
    assert record["model_version"] == job.model_version
    return tasks


@pytest.mark.integration
def test_worker_tags_every_shard_with_the_registry_model(cloud: dict[str, Any]) -> None:
    # GIVEN a model version in the S3 registry and a two-shard job that resolved it
    from spotbot.aws.model_registry import S3ModelRegistry
    from spotbot.core.artifacts import ModelManifest

    model_dir = cloud["tmp"] / "model"
    ModelManifest(bot="words", version="w2", framework="none").write(model_dir)
    (model_dir / "weights.bin").write_bytes(b"\x00" * 10)
    S3ModelRegistry(ARTIFACTS).upload(model_dir)
    job = _create_job(cloud, "job-reg", shards=2)
    assert job.model_version == "w2" and job.options["model_origin"].startswith("s3://")
    # WHEN both array children run (as Batch would: same env, index 0 and 1)
    procs = [_start_worker(cloud, job, index) for index in (0, 1)]
    outcomes = [_finish(p) for p in procs]
    # THEN both exit 0, the model was downloaded, and every asset has its one result
    for code, lines in outcomes:
        assert code == EXIT_DONE, lines
        assert any(line["message"] == "shard finished" for line in lines), lines
        for line in lines:
            assert line["job_id"] == job.id and line["bot"] == "words" and line["attempt"] == 1
    assert {lines[0]["shard"] for _, lines in outcomes} == {0, 1}
    assert (cloud["tmp"] / "cache" / "words" / "w2" / "weights.bin").is_file()
    _assert_complete(cloud, job, "bot error: RuntimeError: the model fell over")


def _wait_for_done(url: str, job_id: str, at_least: int, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = sum(t["status"] == "DONE" for t in _tasks(url, job_id).values())
        if done >= at_least:
            return done
        if proc.poll() is not None:
            pytest.fail(f"the worker ended early: {proc.communicate()}")
        time.sleep(0.1)
    pytest.fail("the worker made no progress")


def _sigterm_then_resume(cloud: dict[str, Any], job: Job, crash_error: str, **extra: str) -> None:
    slow = {"SPOTBOT_TEST_DELAY": "0.1", **extra}
    # WHEN the worker is sent SIGTERM (Spot reclaim) in the middle of the shard
    proc = _start_worker(cloud, job, 0, attempt=1, **slow)
    _wait_for_done(cloud["url"], job.id, 4, proc)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, lines = _finish(proc, timeout=30)
    # THEN it stops within seconds, non-zero (Batch retries on the host's loss), and hands
    # back what it had not started: nothing is left RUNNING, nothing half-done
    assert time.monotonic() - began < 10
    assert code == EXIT_STOPPED, lines
    stop_lines = [line for line in lines if line["message"].startswith("stop signal")]
    assert stop_lines and stop_lines[0]["shard"] == 0 and stop_lines[0]["job_id"] == job.id
    tasks = _tasks(cloud["url"], job.id)
    statuses = [t["status"] for t in tasks.values()]
    assert "RUNNING" not in statuses
    first_done = statuses.count("DONE")
    assert 0 < first_done < N_ASSETS, statuses
    assert len(_result_objects(cloud["s3"], job.id)) == first_done
    # WHEN Batch retries the child (attempt 2)
    proc = _start_worker(cloud, job, 0, attempt=2, **extra)
    code, lines = _finish(proc)
    # THEN it completes the shard: every asset tagged once, no task attempted twice
    assert code == EXIT_DONE, lines
    assert all(line["attempt"] == 2 for line in lines)
    tasks = _assert_complete(cloud, job, crash_error)
    assert {t["attempts"] for t in tasks.values() if t["status"] == "DONE"} == {1}


@pytest.mark.integration
def test_sigterm_mid_shard_then_retry_completes_it_in_container(cloud: dict[str, Any]) -> None:
    # GIVEN a one-shard job over the bot's built-in model
    job = _create_job(cloud, "job-term", shards=1)
    assert job.model_version == "words-1"
    _sigterm_then_resume(cloud, job, "bot error: RuntimeError: the model fell over")


@pytest.mark.integration
def test_batch_too_slow_to_finish_is_abandoned_and_redone(cloud: dict[str, Any]) -> None:
    # GIVEN a worker in the middle of a batch that takes far longer than its stop grace
    job = _create_job(cloud, "job-slow", shards=1)
    proc = _start_worker(cloud, job, 0, args=("--stop-grace", "0.5"), SPOTBOT_TEST_DELAY="3")
    deadline = time.monotonic() + 60
    while not any(t["attempts"] for t in _tasks(cloud["url"], job.id).values()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    # WHEN it is told to stop
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, lines = _finish(proc, timeout=30)
    # THEN it gives the batch up within the grace, leaving its tasks for the retry
    assert code == EXIT_STOPPED and time.monotonic() - began < 5, lines
    assert any(line["message"].startswith("the batch in hand did not finish") for line in lines)
    assert _result_objects(cloud["s3"], job.id) == []
    # WHEN Batch retries: THEN the abandoned batch is redone, to the same single objects
    code, lines = _finish(_start_worker(cloud, job, 0, attempt=2))
    assert code == EXIT_DONE, lines
    tasks = _assert_complete(cloud, job, "bot error: RuntimeError: the model fell over")
    assert max(t["attempts"] for t in tasks.values()) == 2


# -- endpoint mode ------------------------------------------------------------------------
class SageMakerRuntimeDouble(ThreadingHTTPServer):
    """Test double of the SageMaker runtime API on loopback, in front of a `spotbot serve`.

    boto3's real `invoke_endpoint` reaches it through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME. It
    maps POST /endpoints/<name>/invocations to the server's /invocations, answers an unknown
    endpoint as SageMaker does (400 ValidationError), and a container's non-200 answer as a
    424 ModelError carrying OriginalStatusCode / OriginalMessage.
    """

    def __init__(self, endpoint_name: str, serve_url: str):
        self.endpoint_name, self.serve_url = endpoint_name, serve_url
        self.calls = 0
        super().__init__(("127.0.0.1", free_port()), _RuntimeHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RuntimeHandler(BaseHTTPRequestHandler):
    server: SageMakerRuntimeDouble

    def do_POST(self) -> None:
        import httpx

        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
            return self._answer(404, {"message": "unknown path"}, "UnknownOperationException")
        if parts[1] != self.server.endpoint_name:
            message = f"Endpoint {parts[1]} of account 123456789012 not found."
            return self._answer(400, {"message": message}, "ValidationError")
        self.server.calls += 1
        r = httpx.post(
            f"{self.server.serve_url}/invocations",
            content=body,
            headers={
                k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")
            },
            timeout=70,
        )
        if r.status_code == 200:
            return self._answer(200, r.content, content_type=r.headers["content-type"])
        error = {
            "message": f"Received client error ({r.status_code}) from primary",
            "OriginalStatusCode": r.status_code,
            "OriginalMessage": r.text,
        }
        return self._answer(424, error, "ModelError")

    def _answer(
        self, status: int, body: Any, error_type: str = "", content_type: str = "application/json"
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test's output is the worker's."""


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A slow WordsBot behind `spotbot serve` behind the runtime double; the worker's env."""
    from tests.entry.test_serving import serve_process

    env = {"SPOTBOT_BOT": BOT_SPEC, "SPOTBOT_TEST_DELAY": "0.1"}
    with serve_process(tmp_path, env=env) as (_, serve_url, _):
        runtime = SageMakerRuntimeDouble("spotbot-words-test", serve_url)
        thread = threading.Thread(target=runtime.serve_forever, daemon=True)
        thread.start()
        try:
            yield {
                envnames.INFERENCE: "endpoint",
                envnames.ENDPOINT_NAME: runtime.endpoint_name,
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
            }
        finally:
            runtime.shutdown()
            runtime.server_close()


@pytest.mark.integration
def test_sigterm_mid_shard_then_retry_completes_it_through_the_endpoint(
    cloud: dict[str, Any], endpoint: dict[str, str]
) -> None:
    # GIVEN a one-shard job whose workers tag through the SageMaker endpoint
    job = _create_job(cloud, "job-ep", shards=1)
    # the delay lives in the serve process; the worker only decodes, sends and writes
    _sigterm_then_resume(cloud, job, "bot error: RuntimeError: the model fell over", **endpoint)


@pytest.mark.integration
def test_unknown_endpoint_stops_the_worker_without_failing_assets(
    cloud: dict[str, Any], endpoint: dict[str, str]
) -> None:
    job = _create_job(cloud, "job-noep", shards=1)
    proc = _start_worker(cloud, job, 0, **{**endpoint, envnames.ENDPOINT_NAME: "gone"})
    code, lines = _finish(proc)
    assert code == 1, lines
    assert any("not found" in line["message"] for line in lines), lines
    statuses = [t["status"] for t in _tasks(cloud["url"], job.id).values()]
    assert "FAILED" not in statuses and "RUNNING" not in statuses and "DONE" not in statuses


class _Refusing(BaseHTTPRequestHandler):
    """A model container that refuses every request with 413."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        data = b'{"error": "request body too large"}'
        self.send_response(413)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.mark.integration
def test_container_refusal_reaches_endpoint_bot_as_the_assets_failure() -> None:
    import boto3

    from spotbot.aws.endpoint_bot import EndpointBot

    # GIVEN a container that refuses requests, behind the runtime double, and the real client
    container = ThreadingHTTPServer(("127.0.0.1", free_port()), _Refusing)
    runtime = SageMakerRuntimeDouble("ep", f"http://127.0.0.1:{container.server_address[1]}")
    for server in (container, runtime):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=runtime.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        bot = EndpointBot(WordsBot(), "ep", client=client)
        # WHEN one asset is sent, THEN it fails with the container's answer (a ModelError, 413)
        with pytest.raises(AssetError, match=r"refused the asset: .*too large"):
            bot.predict([bot.decode(b"some words", "a.txt")])
        # and a refused batch is an error the worker retries one by one
        with pytest.raises(RuntimeError, match=r"refused a batch \(413\)"):
            bot.predict([bot.decode(b"a", "a.txt"), bot.decode(b"b", "b.txt")])
    finally:
        for server in (container, runtime):
            server.shutdown()
            server.server_close()


@pytest.mark.integration
@pytest.mark.slow
def test_twenty_kills_at_random_moments_lose_and_duplicate_nothing(cloud: dict[str, Any]) -> None:
    """Spot reclaim without grace (kill -9) at random moments: 10 jobs, each killed twice
    mid-shard, then retried to the end, as Batch retries a child that lost its host."""
    rng = random.Random(20)
    kills = 0
    for n in range(10):
        job = _create_job(cloud, f"job-kill-{n}", shards=1)
        attempt = 0
        for _ in range(2):
            attempt += 1
            proc = _start_worker(
                cloud, job, 0, attempt=attempt, SPOTBOT_TEST_DELAY="0.01", args=("--page-size", "8")
            )
            before = sum(t["status"] == "DONE" for t in _tasks(cloud["url"], job.id).values())
            # kill once it is working: past what the last attempt left, then a random moment
            _wait_for_done(cloud["url"], job.id, min(before + 1, N_ASSETS - 8), proc)
            time.sleep(rng.uniform(0.0, 0.25))
            proc.kill()
            kills += proc.wait(timeout=30) == -signal.SIGKILL  # it was still working
        proc = _start_worker(cloud, job, 0, attempt=attempt + 1)
        code, lines = _finish(proc)
        assert code == EXIT_DONE, lines
        # every asset DONE once, one result object each: nothing lost, nothing twice
        _assert_complete(cloud, job, "bot error: RuntimeError: the model fell over")
    print(f"{kills} of 20 kill -9 landed mid-shard; 0 assets lost, 0 written twice")
    assert kills >= 15


def test_a_fault_of_the_environment_exits_75_which_batch_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import spotbot.entry.batch_worker as batch_worker
    from infra.compute import RETRY_RULES
    from spotbot.core.errors import EnvironmentFault

    # GIVEN S3 failing past the client's retries while the worker writes a result
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise EnvironmentFault("cannot write s3://out/runs/j/results/a.json: SlowDown")

    monkeypatch.setattr(batch_worker, "run_worker", failing)
    # WHEN the work entry point runs THEN it exits 75, on which the job definition retries
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = batch_worker.main(WorkerParams(job_id="j", shard=0))
    finally:  # main configures the process's JSON logging: put this process's back
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 75
    assert {"on_exit_code": "75", "action": "RETRY"} in RETRY_RULES
