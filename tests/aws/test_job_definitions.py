"""Custom bots' Batch settings: the api function's SPOTBOT_CUSTOM_BOT_COMPUTE and image checks."""

from __future__ import annotations

import json

import pytest

from spotbot.aws.job_definitions import CustomBotCompute, image_repository
from spotbot.aws.settings import CloudSettings, ConfigError
from spotbot.core import envnames

REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/spotbot-dev/custom-bots"
DIGEST = "@sha256:" + "0" * 64
SETTING = {
    "name_prefix": "spotbot-dev-custom-",
    "job_role_arn": "arn:aws:iam::123456789012:role/job",
    "log_group": "/aws/batch/spotbot-dev-workers",
    "image_repositories": [REPO, "registry.example.com:5000/team/bots"],
}


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        (REPO + DIGEST, REPO),
        (REPO + ":v1", REPO),
        ("registry.example.com:5000/team/bots" + DIGEST, "registry.example.com:5000/team/bots"),
        ("registry.example.com:5000/team/bots:v2", "registry.example.com:5000/team/bots"),
        ("python:3.11", "python"),
    ],
)
def test_the_repository_of_an_image_reference(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def test_only_images_from_the_listed_repositories_are_allowed() -> None:
    compute = CustomBotCompute.from_json(json.dumps(SETTING))
    assert compute.allows_image(REPO + DIGEST)
    assert compute.allows_image("registry.example.com:5000/team/bots" + DIGEST)
    # a repository whose name only begins like an allowed one is another repository
    assert not compute.allows_image(REPO + "-evil" + DIGEST)
    assert not compute.allows_image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/other" + DIGEST)
    assert compute.definition_name("leaf-id") == "spotbot-dev-custom-leaf-id"
    assert (compute.attempts, compute.timeout_seconds) == (3, 86_400)  # the stack's defaults


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "unusable"),
        ("[]", "JSON object"),
        (json.dumps({**SETTING, "job_role_arn": ""}), "lacks job_role_arn"),
    ],
)
def test_a_deployment_with_an_unusable_setting_fails_at_cold_start(
    value: str, message: str
) -> None:
    env = {envnames.OPENSEARCH_ENDPOINT: "https://search", envnames.CUSTOM_BOT_COMPUTE: value}
    with pytest.raises(ConfigError, match=message) as raised:
        CloudSettings.from_env(env)
    assert envnames.CUSTOM_BOT_COMPUTE in str(raised.value)


def test_without_the_setting_custom_bots_cannot_run_but_workers_get_their_environment() -> None:
    env = {
        envnames.OPENSEARCH_ENDPOINT: "https://search",
        envnames.ARTIFACTS_BUCKET: "artifacts",
        envnames.STATE_MACHINE_ARN: "arn:aws:states:eu-west-1:1:stateMachine:x",
    }
    settings = CloudSettings.from_env(env)
    assert settings.custom_bot_compute is None
    # only the deployment's worker variables, never the functions' own
    assert settings.worker_environment == {
        envnames.OPENSEARCH_ENDPOINT: "https://search",
        envnames.ARTIFACTS_BUCKET: "artifacts",
    }
