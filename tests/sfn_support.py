"""moto machinery for executing the real state machines: the real handlers and worker inside.

moto 5.2.5 interprets the definitions (``stepfunctions.execute_state_machine``) but its simple
Lambda and Batch backends never run code: Lambda echoes the payload, a Batch job just turns
SUCCEEDED. Here, through ``monkeypatch``, an invoke runs ``functions.<name>.lambda_handler``
(or a stand-in) and an array child runs the real Batch worker (``run_worker``) with the
environment Batch would give it. A pinned patch fixes moto 5.2.5's Batch request/response
casing (see ``patch_batch_casing``). Everything the handlers and workers call (S3, Batch,
SageMaker) is the same moto state the execution uses; the index is an osmem-server clone.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from spotbot.core import envnames

MOTO_VERSION = "5.2.5"
MOTO_CONFIG: dict[str, Any] = {
    "batch": {"use_docker": False},
    "lambda": {"use_docker": False},
    "stepfunctions": {"execute_state_machine": True},
}
REGION = "us-east-1"
ACCOUNT = "123456789012"
IN_BUCKET, OUT_BUCKET, ARTIFACTS = "spotbot-in", "spotbot-out", "spotbot-artifacts"
#: The deployed test bot: a real Bot with no model to load (tests/fakebots.py).
BOT, BOT_SPEC = "words", "tests.fakebots:WordsBot"
FUNCTIONS = ("init", "scan", "endpoint", "finalize", "cleanup", "requeue", "api")
FUNCTION_PREFIX = "spotbot-"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/spotbot-words@sha256:" + "a" * 64

Event = dict[str, Any]
Handler = Callable[[Event], Any]


# --- moto patches ------------------------------------------------------------------------
def patch_batch_casing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give moto 5.2.5's Batch integration back its ASL <-> boto casing (moto PR #10094).

    In 5.2.5 ``StateTaskService._normalise_parameters`` and ``_normalise_response`` are empty,
    so ``batch:submitJob(.sync)`` calls boto with ``JobName`` and fails with cause 'JobName'.
    The engine still has the converters (``_to_boto_request`` / ``_from_boto_response``, given
    the operation's botocore shapes); this calls them, for the Batch integration only.
    """
    import moto
    from botocore.session import get_session
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch as batch_service,
    )
    from moto.stepfunctions.parser.utils import camel_to_snake_case, snake_to_camel_case

    assert moto.__version__ == MOTO_VERSION, (
        f"this patch reaches into moto {MOTO_VERSION}'s internals; moto is {moto.__version__}: "
        "check whether the casing bug is fixed and drop or adapt the patch"
    )
    models: dict[str, Any] = {}

    def operation(service: Any, boto_service: str | None, action: str | None) -> Any:
        name = service._get_boto_service_name(boto_service_name=boto_service)
        if name not in models:
            models[name] = get_session().get_service_model(name)
        snake = service._get_boto_service_action(service_action_name=action)
        return models[name].operation_model(snake_to_camel_case(camel_to_snake_case(snake)))

    def normalise_parameters(
        self: Any,
        parameters: dict,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        shape = operation(self, boto_service_name, service_action_name).input_shape
        if shape is not None:
            self._to_boto_request(parameters, shape)

    def normalise_response(
        self: Any,
        response: Any,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        shape = operation(self, boto_service_name, service_action_name).output_shape
        if shape is not None:
            self._from_boto_response(response, shape)

    cls = batch_service.StateTaskServiceBatch
    monkeypatch.setattr(cls, "_normalise_parameters", normalise_parameters)
    monkeypatch.setattr(cls, "_normalise_response", normalise_response)


def deploy_test_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install WordsBot as the bot ``words``, as its entry point would in a deployed image."""
    import spotbot.aws.catalog as cloud_bots
    import spotbot.core.plugins as registry

    installed = registry.available_bots

    def with_words() -> dict[str, str]:
        return {**installed(), BOT: BOT_SPEC}

    monkeypatch.setattr(registry, "available_bots", with_words)
    monkeypatch.setattr(cloud_bots, "available_bots", with_words)


# --- Lambda: the real handlers ---------------------------------------------------------------
@dataclass
class FakeLambdaContext:
    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    log_group_name: str = "/aws/lambda/spotbot"
    log_stream_name: str = "2025/01/01/[$LATEST]abcdef"
    remaining_ms: int = 900_000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_handlers(names: tuple[str, ...] = FUNCTIONS) -> dict[str, Handler]:
    """Each handler module imported afresh (its cold start reads this test's environment)."""
    handlers: dict[str, Handler] = {}
    for name in names:
        sys.modules.pop(f"functions.{name}", None)
        module = importlib.import_module(f"functions.{name}")
        context = FakeLambdaContext(f"{FUNCTION_PREFIX}{name}")
        handlers[name] = lambda event, m=module, c=context: m.lambda_handler(event, c)
    return handlers


def unload_handlers() -> None:
    for name in FUNCTIONS:
        sys.modules.pop(f"functions.{name}", None)


@dataclass
class LambdaCall:
    name: str
    event: Event
    result: Any = None
    error: str | None = None


@dataclass
class Lambdas:
    """moto's simple Lambda backend answering with ``handlers`` (short name -> callable).

    A handler's exception becomes what Lambda returns for an unhandled error (the
    ``X-Amz-Function-Error`` header and an ``errorType``/``errorMessage`` payload), so the
    state machine sees the exception's class name as the error, as in AWS.
    """

    handlers: dict[str, Handler]
    calls: list[LambdaCall] = field(default_factory=list)
    #: Called after a handler returns: (name, event, result) -> None; a test's hook point.
    after: Callable[[str, Event, Any], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        lambdas = self

        def invoke(
            backend: Any,
            function_name: str,
            qualifier: Any,
            body: Any,
            headers: Any,
            response_headers: Any,
        ) -> bytes:
            return lambdas.invoke(function_name, body, response_headers)

        monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        name = function_name.rsplit(":", 1)[-1].removeprefix(FUNCTION_PREFIX)
        event = json.loads(body or "{}")
        call = LambdaCall(name, event)
        with self._lock:
            self.calls.append(call)
        try:
            call.result = self.handlers[name](event)
        except Exception as exc:  # the Lambda runtime's answer to an unhandled error
            call.error = type(exc).__name__
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }
            ).encode()
        if self.after is not None:
            self.after(name, event, call.result)
        return json.dumps(call.result).encode()

    def names(self) -> list[str]:
        return [c.name for c in self.calls]


# --- Batch: the real worker --------------------------------------------------------------
@dataclass
class ChildRun:
    job_name: str
    index: int
    attempt: int
    exit_code: int
    reason: str
    image: str = ""
    command: tuple[str, ...] = ()


def run_worker_in_process(env: Mapping[str, str]) -> tuple[int, str]:
    """The `spotbot work` entry point's job, minus what needs a process of its own.

    ``batch_worker.main`` installs SIGTERM handlers (main thread only; this runs on the
    execution's thread) and configures process-wide JSON logging, so this calls
    ``run_worker`` and maps errors to exit codes the way ``main`` does.
    """
    from spotbot.aws.settings import CloudSettings, ConfigError
    from spotbot.core.errors import UsageError
    from spotbot.entry.batch_worker import EXIT_FAILED, EXIT_USAGE, WorkerParams, run_worker

    try:
        params = WorkerParams.from_env(env, threads=1)
        settings = CloudSettings.from_env(env, required=(envnames.OPENSEARCH_ENDPOINT,))
        outcome = run_worker(params, settings=settings)
    except (UsageError, ConfigError) as exc:
        return EXIT_USAGE, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # the container's exit: code 1, the reason in its log
        return EXIT_FAILED, f"{type(exc).__name__}: {exc}"
    return outcome.exit_code, outcome.reason


@dataclass
class BatchWorkers:
    """moto's simple Batch backend, running the worker for every child of an array job.

    A child gets the job definition's environment, the container overrides the state machine
    set, and Batch's own variables (array index, attempt, job id). A failed child is tried
    again up to the job definition's ``retryStrategy.attempts``; a child terminated (cancel,
    cleanup) before it ran fails without running. The parent SUCCEEDS only when every child
    did, as in Batch.
    """

    run_child: Callable[[Mapping[str, str]], tuple[int, str]] = run_worker_in_process
    #: Image -> what a container of that image runs instead (a bot's own image); a test's hook.
    images: dict[str, Callable[[Mapping[str, str]], tuple[int, str]]] = field(default_factory=dict)
    runs: list[ChildRun] = field(default_factory=list)
    #: Called before each child attempt: (job name, index, attempt); a test's hook point.
    before_child: Callable[[str, int, int], None] | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.batch_simple.models import BatchSimpleBackend

        workers = self

        def finish(backend: Any, include_start_attempt: bool, job: Any) -> None:
            workers.finish(backend.backend, include_start_attempt, job)

        monkeypatch.setattr(BatchSimpleBackend, "_mark_job_as_finished", finish)

    def finish(self, backend: Any, include_start_attempt: bool, job: Any) -> None:
        import datetime

        backend._jobs[job.job_id] = job
        job.job_started_at = datetime.datetime.now()
        job.log_stream_name = job._stream_name
        if include_start_attempt:
            job._start_attempt()
        if "size" in job.array_properties:
            # moto finishes the children first; they are registered as "<parent id>:<index>".
            children = [j for i, j in backend._jobs.items() if i.startswith(f"{job.job_id}:")]
            ok = bool(children) and all(c.status == "SUCCEEDED" for c in children)
            if not ok:
                job.job_stopped_reason = "Array Child Job failed"
            job._mark_stopped(success=ok)
            return
        index = int(job.array_properties.get("index", 0))
        # Batch knows an array's parent from its submission on, so a cancel can terminate it
        # (and with it the children not started yet); moto registers it only at the end.
        parent_id = job.job_id.rsplit(":", 1)[0]
        parent = next((j for j in job.job_queue.jobs if j.job_id == parent_id), None)
        if parent is not None and parent is not job:
            backend._jobs.setdefault(parent_id, parent)
        attempts = int((job.job_definition.retry_strategy or {}).get("attempts", 1))
        code, reason = 1, "not run"
        for attempt in range(1, attempts + 1):
            if self.before_child is not None:
                self.before_child(job.job_name, index, attempt)
            stopped = job if job.stop else parent if parent is not None and parent.stop else None
            if stopped is not None:  # terminated: Batch does not start it (again)
                code, reason = 1, stopped.job_stopped_reason or "terminated"
                job.job_stopped_reason = reason
                break
            container = job.job_definition.container_properties or {}
            image = str(container.get("image", ""))
            run = self.images.get(image, self.run_child)
            code, reason = run(self.child_env(job, index, attempt))
            command = tuple(container.get("command") or ())
            self.runs.append(ChildRun(job.job_name, index, attempt, code, reason, image, command))
            if code == 0:
                break
        job.exit_code = code
        if code != 0 and not job.job_stopped_reason:
            job.job_stopped_reason = f"Essential container in task exited ({reason})"[:255]
        job._mark_stopped(success=code == 0)

    @staticmethod
    def child_env(job: Any, index: int, attempt: int) -> dict[str, str]:
        definition = job.job_definition.container_properties or {}
        env = {e["name"]: e["value"] for e in definition.get("environment", [])}
        env.update({e["name"]: e["value"] for e in job.container_overrides.get("environment", [])})
        env.update(
            {
                envnames.AWS_BATCH_JOB_ARRAY_INDEX: str(index),
                envnames.AWS_BATCH_JOB_ATTEMPT: str(attempt),
                envnames.AWS_BATCH_JOB_ID: job.job_id,
            }
        )
        return env


# --- executions ----------------------------------------------------------------------------
def wait_for_execution(sfn: Any, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_arn} did not finish within {timeout} s")


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


@dataclass(frozen=True)
class HistoryStats:
    events: int
    state_transitions: int  # states entered (what Step Functions bills and counts)
    max_input_bytes: int
    max_output_bytes: int
    entered: dict[str, int]  # state name -> times entered

    @property
    def max_state_bytes(self) -> int:
        return max(self.max_input_bytes, self.max_output_bytes)


def history_stats(events: list[dict[str, Any]]) -> HistoryStats:
    """Counts and the largest state input/output (UTF-8 bytes) of an execution's history."""
    entered: dict[str, int] = {}
    max_in = max_out = 0
    for event in events:
        for key, value in event.items():
            if not isinstance(value, dict):
                continue
            if key == "stateEnteredEventDetails":
                entered[value["name"]] = entered.get(value["name"], 0) + 1
                max_in = max(max_in, len(str(value.get("input", "")).encode()))
            elif key == "stateExitedEventDetails":
                max_out = max(max_out, len(str(value.get("output", "")).encode()))
    return HistoryStats(len(events), sum(entered.values()), max_in, max_out, entered)


def iter_s3_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


# --- SageMaker runtime: the serving contract ---------------------------------------------
@dataclass
class EndpointRuntime:
    """InvokeEndpoint answered by spotbot's serving code (``Tagger``) over WordsBot.

    moto's runtime returns canned bodies and never checks the endpoint; this answers only
    for an endpoint that exists and is InService, as SageMaker does. ``broken`` makes it
    answer like a container that is not spotbot's (a wrong image behind the endpoint).
    """

    broken: bool = False
    requests: int = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from urllib.parse import unquote

        from moto.sagemaker.exceptions import ValidationError
        from moto.sagemaker.models import sagemaker_backends
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        from spotbot.core.artifacts import ModelRef
        from spotbot.entry.serving import Tagger
        from tests.fakebots import WordsBot

        bot = WordsBot()
        bot.load(ModelRef(BOT, WordsBot.builtin_version or "", None, "test"))
        tagger = Tagger(bot)
        runtime = self

        # Replaces the response handler, not the backend: moto 5.2.5 reads the endpoint
        # name from the query (it is in the path, /endpoints/<name>/invocations), so the
        # backend only ever sees None.
        def invoke_endpoint(response: Any) -> tuple[int, dict[str, str], str]:
            runtime.requests += 1
            name = unquote(response.path.split("/")[2])
            endpoints = sagemaker_backends[response.current_account][response.region].endpoints
            if endpoints.get(name) is None or endpoints[name].endpoint_status != "InService":
                raise ValidationError(message=f"Endpoint {name} is not InService.")
            if runtime.broken:
                return 200, {"Content-Type": "text/html"}, "<html>not a spotbot model</html>"
            body = response.body if isinstance(response.body, bytes) else response.body.encode()
            predictions = tagger.tag_batch(body)
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"predictions": predictions}),
            )

        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
