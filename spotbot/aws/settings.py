"""Deployment settings read once from the environment (names in spotbot.core.envnames), validated at start."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spotbot.aws.job_definitions import CustomBotCompute
from spotbot.aws.model_registry import S3ModelRegistry
from spotbot.core import envnames
from spotbot.core.errors import BucketNotAllowedError, SpotbotError
from spotbot.core.sources import parse_s3_uri


class ConfigError(SpotbotError):
    """The function or worker was deployed without a setting it needs."""


@dataclass(frozen=True, slots=True)
class CloudSettings:
    opensearch_endpoint: str | None = None
    index_prefix: str = "spotbot-"
    region: str | None = None
    opensearch_service: str = "es"
    artifacts_bucket: str | None = None
    models_prefix: str = "models/"
    allowed_buckets: frozenset[str] = frozenset()
    state_machine_arn: str | None = None
    retry_state_machine_arn: str | None = None
    job_queue_arn: str | None = None
    sagemaker_role_arn: str | None = None
    image_uris: Mapping[str, str] = field(default_factory=dict)
    endpoint_instance_type: str = "ml.m5.xlarge"
    endpoint_name_prefix: str = "spotbot"
    default_inference: str = "in-container"
    custom_bot_compute: CustomBotCompute | None = None  # None: custom bots cannot run here
    #: The deployment's settings a worker container needs (envnames.WORKER_DEPLOYMENT_VARIABLES).
    worker_environment: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, required: tuple[str, ...] = ()
    ) -> CloudSettings:
        """Read the settings; ConfigError naming every variable in `required` that is unset."""
        env = os.environ if environ is None else environ
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        try:
            images: dict[str, Any] = json.loads(env.get(envnames.IMAGE_URIS) or "{}")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{envnames.IMAGE_URIS} is not JSON: {exc}") from None
        inference = env.get(envnames.DEFAULT_INFERENCE) or "in-container"
        if inference not in ("endpoint", "in-container"):
            raise ConfigError(f"{envnames.DEFAULT_INFERENCE} must be endpoint or in-container")
        prefix = env.get(envnames.MODELS_PREFIX, "models/")
        compute = None
        if env.get(envnames.CUSTOM_BOT_COMPUTE):
            try:
                compute = CustomBotCompute.from_json(env[envnames.CUSTOM_BOT_COMPUTE])
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{envnames.CUSTOM_BOT_COMPUTE} is unusable: {exc}") from None
        return cls(
            opensearch_endpoint=(env.get(envnames.OPENSEARCH_ENDPOINT) or "").rstrip("/") or None,
            index_prefix=env.get(envnames.INDEX_PREFIX) or "spotbot-",
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            opensearch_service=env.get("SPOTBOT_OPENSEARCH_SERVICE") or "es",
            artifacts_bucket=env.get(envnames.ARTIFACTS_BUCKET) or None,
            models_prefix=prefix if prefix.endswith("/") or not prefix else prefix + "/",
            allowed_buckets=frozenset(
                b.strip() for b in (env.get(envnames.ALLOWED_BUCKETS) or "").split(",") if b.strip()
            ),
            state_machine_arn=env.get(envnames.STATE_MACHINE_ARN) or None,
            retry_state_machine_arn=env.get(envnames.RETRY_STATE_MACHINE_ARN) or None,
            job_queue_arn=env.get(envnames.JOB_QUEUE_ARN) or None,
            sagemaker_role_arn=env.get(envnames.SAGEMAKER_ROLE_ARN) or None,
            image_uris={str(k): str(v) for k, v in images.items()},
            endpoint_instance_type=env.get(envnames.ENDPOINT_INSTANCE_TYPE) or "ml.m5.xlarge",
            endpoint_name_prefix=env.get(envnames.ENDPOINT_NAME_PREFIX) or "spotbot",
            default_inference=inference,
            custom_bot_compute=compute,
            worker_environment={
                name: env[name] for name in envnames.WORKER_DEPLOYMENT_VARIABLES if env.get(name)
            },
        )

    def check_bucket_allowed(self, uri: str, what: str = "location") -> tuple[str, str]:
        """(bucket, prefix) of an s3:// URI in a bucket this deployment may use, else UsageError."""
        bucket, prefix = parse_s3_uri(uri)
        allowed = set(self.allowed_buckets) | (
            {self.artifacts_bucket} if self.artifacts_bucket else set()
        )
        if bucket not in allowed:
            raise BucketNotAllowedError(
                f"the {what} bucket {bucket!r} is not one this deployment may use"
            )
        return bucket, prefix

    def open_store(self) -> Any:
        """The OpenSearch task store, SigV4-signed when a region is known."""
        # Imported here: opensearch-py costs every other user of the settings (the CLI's
        # `spotbot train --cloud`, the API's cold start of routes without the index) ~0.2 s.
        from spotbot.aws.opensearch_store import OpenSearchTaskStore

        if not self.opensearch_endpoint:
            raise ConfigError(f"missing environment variable: {envnames.OPENSEARCH_ENDPOINT}")
        signed = self.opensearch_endpoint.startswith("https://") and self.region
        return OpenSearchTaskStore(
            self.opensearch_endpoint,
            prefix=self.index_prefix,
            region=self.region if signed else None,
            service=self.opensearch_service,
        )

    def registry(self, client: Any = None) -> Any:
        if not self.artifacts_bucket:
            raise ConfigError(f"missing environment variable: {envnames.ARTIFACTS_BUCKET}")
        return S3ModelRegistry(self.artifacts_bucket, self.models_prefix, client=client)
