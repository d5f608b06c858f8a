"""Batch job definitions of custom bots: registered with the bot, deregistered when it is removed.

One definition per registered bot, not one generic definition with container overrides:
Batch's container overrides may change a job's command, environment and resources but never
its image, and a custom bot is its own image. A definition per bot also keeps what a bot runs
(image by digest, command, vCPUs, memory) visible in Batch, versioned by its revisions.

A custom bot's definition is built like the stack's own (infra/compute.py): the deployment's
worker environment, the stack's job role and log group, the same retry rules, user 1000,
never privileged. Its name is ``<name_prefix><bot>``: the api function may register and
deregister only names under that prefix, and only images from the allowed repositories.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spotbot.aws.catalog import CustomBotSpec
from spotbot.aws.clients import LazyClient, aws_errors, error_code
from spotbot.core import envnames
from spotbot.core.errors import ENVIRONMENT_EXIT_CODE, CloudServiceError

#: Batch retries a worker whose host went away (Spot reclaim) or whom the environment stopped
#: (exit 75), never one whose code failed. infra/compute.py gives the stack's bots the same.
WORKER_RETRY_RULES: tuple[dict[str, str], ...] = (
    {"onStatusReason": "Host EC2*", "action": "RETRY"},
    {"onExitCode": str(ENVIRONMENT_EXIT_CODE), "action": "RETRY"},
    {"onReason": "*", "action": "EXIT"},
)
WORKER_USER = "1000"
#: How Batch's ClientException says that a revision is already gone.
_GONE_WORDS = ("does not exist", "not found", "inactive")


def image_repository(image: str) -> str:
    """The repository of an image reference: what comes before ``@digest`` (or ``:tag``)."""
    name, at, _ = image.partition("@")
    if at:
        return name
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class CustomBotCompute:
    """How this deployment runs custom bots on Batch (``SPOTBOT_CUSTOM_BOT_COMPUTE``)."""

    name_prefix: str
    job_role_arn: str
    log_group: str
    image_repositories: tuple[str, ...] = ()
    attempts: int = 3
    timeout_seconds: int = 86_400

    @classmethod
    def from_json(cls, text: str) -> CustomBotCompute:
        """Parse the variable; ValueError saying what is wrong."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("it must be a JSON object")
        missing = [k for k in ("name_prefix", "job_role_arn", "log_group") if not data.get(k)]
        if missing:
            raise ValueError(f"it lacks {', '.join(missing)}")
        return cls(
            name_prefix=str(data["name_prefix"]),
            job_role_arn=str(data["job_role_arn"]),
            log_group=str(data["log_group"]),
            image_repositories=tuple(str(r) for r in data.get("image_repositories") or ()),
            attempts=int(data.get("attempts", 3)),
            timeout_seconds=int(data.get("timeout_seconds", 86_400)),
        )

    def definition_name(self, bot: str) -> str:
        return f"{self.name_prefix}{bot}"

    def allows_image(self, image: str) -> bool:
        return image_repository(image) in self.image_repositories


class BotJobDefinitions:
    """Register and deregister custom bots' job definitions (a client may be handed in)."""

    client = LazyClient("batch")

    def __init__(
        self,
        compute: CustomBotCompute,
        environment: Mapping[str, str],
        region: str | None,
        client: Any = None,
    ):
        self.compute = compute
        self.environment = dict(environment)
        self.region = region
        self._client = client

    def container_properties(self, spec: CustomBotSpec) -> dict[str, Any]:
        env = {**self.environment, envnames.BOT: spec.name}
        log_options = {"awslogs-group": self.compute.log_group, "awslogs-stream-prefix": spec.name}
        if self.region:
            log_options["awslogs-region"] = self.region
        return {
            "image": spec.image_uri,
            "command": list(spec.command),
            "jobRoleArn": self.compute.job_role_arn,
            "resourceRequirements": [
                {"type": "VCPU", "value": str(spec.vcpus)},
                {"type": "MEMORY", "value": str(spec.memory_mib)},
            ],
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "logConfiguration": {"logDriver": "awslogs", "options": log_options},
            "readonlyRootFilesystem": False,
            "privileged": False,
            "user": WORKER_USER,
        }

    def register(self, spec: CustomBotSpec) -> str:
        """A new revision of the bot's definition; its ARN."""
        with aws_errors(f"register the Batch job definition of bot {spec.name}"):
            answer = self.client.register_job_definition(
                jobDefinitionName=self.compute.definition_name(spec.name),
                type="container",
                platformCapabilities=["EC2"],
                containerProperties=self.container_properties(spec),
                retryStrategy={
                    "attempts": self.compute.attempts,
                    "evaluateOnExit": [dict(rule) for rule in WORKER_RETRY_RULES],
                },
                timeout={"attemptDurationSeconds": self.compute.timeout_seconds},
                # No tags: tagging on registration would need batch:TagResource as well.
            )
        return str(answer["jobDefinitionArn"])

    def deregister(self, arn: str) -> bool:
        """Deregister one revision; False when Batch no longer knows it (already gone)."""
        from botocore.exceptions import ClientError

        try:
            self.client.deregister_job_definition(jobDefinition=arn)
        except ClientError as exc:
            code = error_code(exc)
            message = str(exc).lower()
            if code == "ClientException" and any(w in message for w in _GONE_WORDS):
                return False
            raise CloudServiceError(f"could not deregister job definition {arn}: {code}") from exc
        return True
