"""`spotbot cloud` against the API handler behind a real local HTTP server (moto and the
OpenSearch stand-in behind it), as a user in a terminal would use the deployed API."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from click.testing import CliRunner

from spotbot.entry.cli import main
from tests.functions.api_wsgi import ApiGatewayWsgi
from tests.functions.test_steps import finish_tasks, init_event, put_assets

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_url(load_handler: Callable[[str], ModuleType], lambda_context: Any) -> Iterator[str]:
    api = load_handler("api")
    server = make_server(
        "127.0.0.1", 0, ApiGatewayWsgi(api.lambda_handler, lambda_context), handler_class=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _cli(url: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["cloud", "--api-url", url, *args])


def _json_out(result: Any) -> Any:
    """The command's JSON answer: the API's handler runs in this process and logs JSON lines
    to the same stdout, so the answer is the last line that is not a log record."""
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            if "level" not in data and "_aws" not in data:
                return data
    raise AssertionError(result.output)


def test_submit_status_search_and_errors_through_the_api(
    api_url: str, aws: dict[str, Any], store: Any
) -> None:
    # WHEN a user lists the bots and submits a job
    bots = _cli(api_url, "bots")
    assert bots.exit_code == 0 and "ocr-zh" in bots.output
    submitted = _cli(
        api_url, "submit", "ocr-zh", "s3://spotbot-in/photos/", "s3://spotbot-out/tags/", "--json"
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = _json_out(submitted)["job_id"]
    # THEN its execution started, and its status reads as a line or as JSON
    executions = aws["stepfunctions"].list_executions(
        stateMachineArn="arn:aws:states:us-east-1:123456789012:stateMachine:spotbot-tagging"
    )["executions"]
    assert [e["name"] for e in executions] == [job_id]
    status = _cli(api_url, "status", job_id)
    assert status.exit_code == 0
    assert f"job {job_id}: STARTING - no tasks yet" in status.stdout.splitlines()
    # AND a client mistake is one line and exit 2, an unknown job too
    bad = _cli(api_url, "submit", "ocr-zh", "s3://someone-elses-bucket/x/", "s3://spotbot-out/t/")
    assert bad.exit_code == 2 and "bucket_not_allowed" in bad.output
    assert _cli(api_url, "status", "job-nope").exit_code == 2
    # AND without an address the CLI says where to find it
    lost = CliRunner().invoke(main, ["cloud", "bots"], env={"SPOTBOT_API_URL": ""})
    assert lost.exit_code == 2 and "pulumi stack output api_url" in lost.output


def test_watch_follows_a_job_to_its_end_and_results_downloads_it(
    api_url: str,
    aws: dict[str, Any],
    store: Any,
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    tmp_path: Path,
) -> None:
    # GIVEN a job that ran to its end (played by the functions and a fake worker)
    put_assets(aws["s3"], [f"p{i}.jpg" for i in range(6)])
    load_handler("init").lambda_handler(init_event("job-w", shards=2), lambda_context)
    load_handler("scan").lambda_handler({"job_id": "job-w"}, lambda_context)
    finish_tasks(store, "job-w", 2)
    load_handler("finalize").lambda_handler(
        {"job_id": "job-w", "max_failure_pct": 100.0, "workers": []}, lambda_context
    )
    # WHEN the user watches it (not a terminal: plain lines) THEN it ends 0 with the counts
    watched = _cli(api_url, "watch", "job-w", "--interval", "0.1")
    assert watched.exit_code == 0, watched.output
    assert "job job-w: SUCCEEDED - done 6, failed 0" in watched.output
    # AND search finds its text across pages, and results downloads its files
    found = _cli(api_url, "search", "出口", "--limit", "2", "--all", "--json")
    assert found.exit_code == 0 and len(_json_out(found)["hits"]) == 6
    fetched = _cli(api_url, "results", "job-w", "--out", str(tmp_path))
    assert fetched.exit_code == 0, fetched.output
    lines = (tmp_path / "job-w" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6
    assert json.loads((tmp_path / "job-w" / "summary.json").read_text())["status"] == "SUCCEEDED"


def test_register_and_unregister_a_custom_bot(api_url: str, aws: dict[str, Any]) -> None:
    from tests.functions.conftest import BOT_REPOSITORY

    image = f"{BOT_REPOSITORY}@sha256:" + "a" * 64
    # WHEN a user registers a bot of their own
    registered = _cli(
        api_url,
        "register",
        "leaf-id",
        "--image",
        image,
        "--model",
        "s3://spotbot-artifacts/models/leaf-id/v1/",
        "--model-version",
        "v1",
        "--accepts",
        "JPG, .png",
        "--command",
        "python -m leafbot work",
        "--vcpus",
        "4",
        "--json",
    )
    # THEN it is listed, with the job definition it runs on
    assert registered.exit_code == 0, registered.output
    answer = _json_out(registered)
    assert answer["accepts"] == ["jpg", "png"] and answer["command"][-1] == "work"
    assert answer["job_definition_arn"] and answer["vcpus"] == 4
    assert "leaf-id" in _cli(api_url, "bots").stdout
    # AND an image from elsewhere is one line and exit 2
    elsewhere = _cli(
        api_url,
        "register",
        "leaf-2",
        "--image",
        "docker.io/library/python@sha256:" + "a" * 64,
        "--model",
        "s3://spotbot-artifacts/models/leaf-2/v1/",
        "--accepts",
        "jpg",
    )
    assert elsewhere.exit_code == 2 and "image_not_allowed" in elsewhere.output
    # WHEN it is unregistered THEN it is gone
    removed = _cli(api_url, "unregister", "leaf-id")
    assert removed.exit_code == 0 and "bot leaf-id removed" in removed.stdout
    assert _cli(api_url, "unregister", "leaf-id").exit_code == 2


def test_a_job_stopped_at_its_budget_ends_watch_shows_its_spend_and_retries_with_a_new_one(
    api_url: str,
    aws: dict[str, Any],
    store: Any,
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
) -> None:
    from spotbot.core.guards import set_options

    # GIVEN a job whose workers stopped at its budget before tagging anything, then finalized
    put_assets(aws["s3"], [f"p{i}.jpg" for i in range(6)])
    load_handler("init").lambda_handler(init_event("job-b", budget_usd=0.01), lambda_context)
    load_handler("scan").lambda_handler({"job_id": "job-b"}, lambda_context)
    set_options(store, "job-b", abort_reason="budget reached", abort_status="BUDGET_EXCEEDED")
    load_handler("finalize").lambda_handler({"job_id": "job-b", "workers": []}, lambda_context)
    # WHEN the user watches it THEN watch ends (exit 1) with the status and the spend
    watched = _cli(api_url, "watch", "job-b", "--interval", "0.1")
    assert watched.exit_code == 1, watched.output
    assert "job job-b: BUDGET_EXCEEDED - done 0" in watched.output
    assert "spend $0.0000 of $0.01" in watched.output
    # WHEN the user retries it with a new budget THEN the untagged assets go again with it
    retried = _cli(api_url, "retry", "job-b", "--budget-usd", "5")
    assert retried.exit_code == 0, retried.output
    assert "job job-b: retrying 0 failed assets and 6 untagged ones" in retried.output
    (execution,) = aws["stepfunctions"].list_executions(
        stateMachineArn="arn:aws:states:us-east-1:123456789012:stateMachine:spotbot-retry"
    )["executions"]
    started = aws["stepfunctions"].describe_execution(executionArn=execution["executionArn"])
    assert json.loads(started["input"]) == {"job_id": "job-b", "budget_usd": 5.0}
