"""Bring your own bot, end to end under moto: a bot registered through the API (its own image,
command and resources) tags assets in a real state-machine execution, on the Batch job
definition registered for it, and cannot be removed while its job runs.

The machines, handlers and worker are those of test_state_machine_execution.py (its ``cloud``
fixture). The custom image is stood in for by spotbot's worker with the bot installed the way
an image installs it (the ``spotbot.bots`` entry point): only children whose job definition
names that image have it, as only that image would. Run under .venv-sfn: ``-m stepfunctions``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aws_lambda_powertools")
pytest.importorskip("osmem_server")

from spotbot.core import envnames
from spotbot.core.bot import Prediction
from tests import sfn_support as sfn
from tests.fakebots import WordsBot
from tests.workflows.test_state_machine_execution import (  # noqa: F401 - `cloud` is a fixture
    BAD,
    GOOD,
    Cloud,
    cloud,
)

pytestmark = [
    pytest.mark.stepfunctions,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

BOT = "shout"
REPOSITORY = f"{sfn.ACCOUNT}.dkr.ecr.{sfn.REGION}.amazonaws.com/spotbot-custom-bots"
IMAGE = f"{REPOSITORY}@sha256:" + "e" * 64
COMMAND = ["work", "--threads", "1"]
COMPUTE = {
    "name_prefix": "spotbot-custom-",
    "job_role_arn": f"arn:aws:iam::{sfn.ACCOUNT}:role/spotbot-job",
    "log_group": "/aws/batch/spotbot-workers",
    "image_repositories": [REPOSITORY],
    "attempts": 2,
    "timeout_seconds": 600,
}


class ShoutBot(WordsBot):
    """A bot spotbot does not ship: the words of a text file, shouted. It loads a model."""

    name = BOT
    description = "test bot from elsewhere: the words of a text file, upper-cased"
    builtin_version = None

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        out = super().predict(items)
        for prediction in out:
            for tag in prediction["tags"]:
                tag["label"] = str(tag["label"]).upper()
        return out


def run_in_custom_image(env: Mapping[str, str]) -> tuple[int, str]:
    """A container of the custom image: the worker, with `shout` installed as an entry point."""
    import spotbot.core.plugins as plugins

    installed = plugins.available_bots
    plugins.available_bots = lambda: {**installed(), BOT: f"{__name__}:ShoutBot"}  # type: ignore[method-assign]
    try:
        return sfn.run_worker_in_process(env)
    finally:
        plugins.available_bots = installed  # type: ignore[method-assign]


@pytest.fixture
def byob(cloud: Cloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cloud:  # noqa: F811
    """The cloud with the api function deployed to register custom bots, the bot's model in
    the registry, and the custom image's containers running the bot."""
    from spotbot.aws.model_registry import S3ModelRegistry
    from spotbot.core.artifacts import ModelManifest

    monkeypatch.setenv(envnames.CUSTOM_BOT_COMPUTE, json.dumps(COMPUTE))
    cloud.handlers.update(sfn.load_handlers(("api",)))  # a cold start with that setting
    cloud.lambdas.handlers.update(cloud.handlers)
    model = tmp_path / "model"
    model.mkdir()
    ModelManifest(bot=BOT, version="v1", framework="words").write(model)
    S3ModelRegistry(sfn.ARTIFACTS, "models/", client=cloud.s3).upload(model)
    cloud.workers.images[IMAGE] = run_in_custom_image
    return cloud


def _register(aws: Cloud) -> dict[str, Any]:
    registration = {
        "image_uri": IMAGE,
        "model_uri": f"s3://{sfn.ARTIFACTS}/models/{BOT}/v1/",
        "model_version": "v1",
        "extensions": ["txt"],
        "command": COMMAND,
        "vcpus": 1,
        "memory_mib": 1024,
    }
    status, bot = aws.api("PUT", f"/bots/{BOT}", registration)
    assert status == 200, bot
    return dict(bot)


def _start(aws: Cloud, **extra: Any) -> str:
    request = {
        "bot": BOT,
        "source": f"s3://{sfn.IN_BUCKET}/docs",
        "output": f"s3://{sfn.OUT_BUCKET}/runs",
        "shards": 3,
        **extra,
    }
    status, body = aws.api("POST", "/jobs", request)
    assert status == 202, body
    return str(body["job_id"])


def _wait(aws: Cloud, execution_name: str, machine: str = "spotbot-tagging") -> dict[str, Any]:
    arn = f"arn:aws:states:{sfn.REGION}:{sfn.ACCOUNT}:execution:{machine}:{execution_name}"
    return sfn.wait_for_execution(aws.sfn, arn)


def test_a_bot_registered_through_the_api_tags_assets_on_its_own_job_definition(
    byob: Cloud,
) -> None:
    aws = byob
    # GIVEN text assets and a custom bot registered through the API
    aws.put_assets(GOOD)
    bot = _register(aws)
    definition_arn = bot["job_definition_arn"]
    # and, while its job's workers run, an attempt to remove the bot
    removals: list[tuple[int, Any]] = []
    aws.workers.before_child = lambda name, index, attempt: removals.append(
        aws.api("DELETE", f"/bots/{BOT}")
    )
    # WHEN a job with it is started through the API and runs
    job_id = _start(aws)
    execution = _wait(aws, job_id)
    # THEN InitJob handed the bot's registered job definition to the workers' arrays
    assert execution["status"] == "SUCCEEDED", (execution, aws.workers.runs)
    output = json.loads(execution["output"])
    assert output["job"]["job_definition"] == definition_arn
    # and every child ran the custom image's command, and the bot in it, once
    runs = sorted((r.index, r.attempt, r.exit_code, r.image, r.command) for r in aws.workers.runs)
    assert [r[:3] for r in runs] == [(0, 1, 0), (1, 1, 0), (2, 1, 0)]
    assert {(r[3], r[4]) for r in runs} == {(IMAGE, tuple(COMMAND))}
    tasks = aws.tasks(job_id)
    assert {v["status"] for v in tasks.values()} == {"DONE"} and len(tasks) == len(GOOD)
    lines = [json.loads(x) for x in aws.output_json(job_id, "results.jsonl").splitlines()]
    assert {x["tags"][0]["label"] for x in lines} == {"WORD"}
    assert {x["model_version"] for x in lines} == {"v1"}
    # and removing the bot was refused while the job ran
    assert removals and all(status == 409 for status, _ in removals), removals
    assert job_id in removals[0][1]["detail"]
    # WHEN the job ended THEN the bot can be removed: its definition is deregistered
    aws.workers.before_child = None
    status, body = aws.api("DELETE", f"/bots/{BOT}")
    assert status == 200 and body["job_definition_deregistered"] is True, body
    (described,) = aws.batch.describe_job_definitions(jobDefinitions=[definition_arn])[
        "jobDefinitions"
    ]
    assert described["status"] == "INACTIVE"
    status, body = aws.api(
        "POST",
        "/jobs",
        {"bot": BOT, "source": "s3://spotbot-in/docs", "output": "s3://spotbot-out/runs"},
    )
    assert status == 400 and body["error"] == "unknown_bot", body


def test_a_retry_of_a_custom_bots_job_runs_on_its_job_definition(byob: Cloud) -> None:
    aws = byob
    # GIVEN a custom bot's job that failed its threshold on 3 undecodable assets, since fixed
    aws.put_assets({**GOOD, **BAD})
    bot = _register(aws)
    job_id = _start(aws, max_failure_pct=5)
    assert _wait(aws, job_id)["status"] == "FAILED"
    first = len(aws.workers.runs)
    aws.put_assets({key: b"fixed words" for key in BAD})
    # WHEN the retry is asked for through the API
    status, body = aws.api("POST", f"/jobs/{job_id}/retry", {})
    assert status == 202 and body["failed"] == len(BAD), body
    retried = _wait(aws, body["execution_name"], machine="spotbot-retry")
    # THEN requeue found the bot's job definition, and its image's workers tagged the rest
    assert retried["status"] == "SUCCEEDED", (retried, aws.workers.runs[first:])
    assert json.loads(retried["output"])["job"]["job_definition"] == bot["job_definition_arn"]
    again = aws.workers.runs[first:]
    assert again and all(r.image == IMAGE and r.exit_code == 0 for r in again)
    tasks = aws.tasks(job_id)
    assert {v["status"] for v in tasks.values()} == {"DONE"}
    assert aws.output_json(job_id, "results.jsonl").count('"FIXED"') == len(BAD)
