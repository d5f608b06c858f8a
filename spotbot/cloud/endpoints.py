"""SageMaker endpoints of (bot, model version): names, create-or-reuse, and release after a job.

One endpoint serves every running job of the same bot and model version. Its model, endpoint
config and endpoint share one name derived from the deployment prefix, bot and version, so
any function can find it again without a lookup table. A job records the endpoint it uses in
its record *before* the endpoint is touched, so a cleanup of another job running at the same
moment sees the new user and keeps the endpoint. Nothing here waits: the state machine polls.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from spotbot.aws.catalog import BotCatalog
from spotbot.aws.clients import aws_errors, error_code
from spotbot.aws.settings import CloudSettings, ConfigError
from spotbot.cloud.estimate import endpoint_hour_usd
from spotbot.cloud.steps import is_cancel_requested, merge_options
from spotbot.core import envnames
from spotbot.core.errors import JobCancelledError
from spotbot.core.guards import (
    ENDPOINT_HOUR_USD,
    ENDPOINT_SECONDS,
    ENDPOINT_SINCE,
    endpoint_seconds,
)
from spotbot.core.records import Job, JobStatus, utcnow
from spotbot.core.store import TaskStore

log = logging.getLogger(__name__)

NAME_MAX = 63  # SageMaker model, endpoint config and endpoint names: [a-zA-Z0-9-], 63 chars
ENDPOINT_KEY = "endpoint_name"
CREATED_KEY = "endpoint_created"
#: How many recent jobs a release looks through for other users of an endpoint.
USERS_SCAN_LIMIT = 1000
#: Endpoint statuses that cost nothing (or soon will): the rest are instances running.
NOT_BILLED = ("Failed", "Deleting", "OutOfService")


def resource_name(prefix: str, bot: str, version: str) -> str:
    """``<prefix>-<bot>-<version>`` in SageMaker's alphabet; a hash keeps altered names unique.

    ``v1.0`` and ``v1-0`` would both clean to ``v1-0``: whenever cleaning or truncating changed
    the name, 8 hex digits of the original are appended so two versions never share endpoints.
    """
    raw = f"{prefix}-{bot}-{version}"
    clean = re.sub(r"-{2,}", "-", re.sub(r"[^a-zA-Z0-9-]", "-", raw)).strip("-")
    if clean == raw and len(clean) <= NAME_MAX:
        return clean
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{clean[: NAME_MAX - len(digest) - 1].rstrip('-')}-{digest}"


@dataclass(frozen=True, slots=True)
class EndpointState:
    name: str
    created: bool
    status: str


def _missing(exc: Exception) -> bool:
    # SageMaker reports a missing resource as ValidationException "Could not find ...".
    return error_code(exc) in (
        "ValidationException",
        "ResourceNotFound",
    ) and "ould not find" in str(exc)


class SageMakerEndpoints:
    """The boto3 side: describe, create the missing pieces, delete. Errors become spotbot's."""

    def __init__(self, client: Any, role_arn: str | None, instance_type: str):
        self.client = client
        self.role_arn = role_arn
        self.instance_type = instance_type

    def _exists(self, call: Any, **kwargs: Any) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(call(**kwargs))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def status(self, name: str) -> str | None:
        with aws_errors(f"describe endpoint {name}"):
            found = self._exists(self.client.describe_endpoint, EndpointName=name)
        return str(found["EndpointStatus"]) if found else None

    def ensure(
        self,
        name: str,
        *,
        image: str,
        model_data: str | None,
        environment: dict[str, str],
        tags: dict[str, str],
    ) -> EndpointState:
        """Create whichever of model, endpoint config and endpoint is missing; never wait."""
        from botocore.exceptions import ClientError

        if not self.role_arn:
            raise ConfigError(f"missing environment variable: {envnames.SAGEMAKER_ROLE_ARN}")
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        with aws_errors(f"create or reuse endpoint {name}"):
            if not self._exists(self.client.describe_model, ModelName=name):
                container: dict[str, Any] = {"Image": image, "Environment": environment}
                if model_data and model_data.endswith(".tar.gz"):
                    container["ModelDataUrl"] = model_data
                elif model_data:
                    # An uncompressed model folder, as the registry keeps it.
                    container["ModelDataSource"] = {
                        "S3DataSource": {
                            "S3Uri": model_data if model_data.endswith("/") else model_data + "/",
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                        }
                    }
                self.client.create_model(
                    ModelName=name,
                    ExecutionRoleArn=self.role_arn,
                    PrimaryContainer=container,
                    Tags=tag_list,
                )
            if not self._exists(self.client.describe_endpoint_config, EndpointConfigName=name):
                self.client.create_endpoint_config(
                    EndpointConfigName=name,
                    ProductionVariants=[
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": name,
                            "InitialInstanceCount": 1,
                            "InstanceType": self.instance_type,
                        }
                    ],
                    Tags=tag_list,
                )
            found = self._exists(self.client.describe_endpoint, EndpointName=name)
            if found:
                return EndpointState(name, False, str(found["EndpointStatus"]))
            try:
                self.client.create_endpoint(
                    EndpointName=name, EndpointConfigName=name, Tags=tag_list
                )
            except ClientError as exc:
                # Another job created it between our describe and create: reuse it.
                if "already exist" not in str(exc):
                    raise
                return EndpointState(name, False, self.status(name) or "Creating")
            return EndpointState(name, True, self.status(name) or "Creating")

    def running(self, prefix: str) -> list[str]:
        """Names of the endpoints named ``<prefix>-*`` that may be billed (not failed or going)."""
        names = []
        with aws_errors("list endpoints"):
            for page in self.client.get_paginator("list_endpoints").paginate(NameContains=prefix):
                for endpoint in page.get("Endpoints", []):
                    name = str(endpoint["EndpointName"])
                    status = str(endpoint.get("EndpointStatus", ""))
                    if name.startswith(f"{prefix}-") and status not in NOT_BILLED:
                        names.append(name)
        return sorted(names)

    def delete(self, name: str) -> bool:
        """Delete endpoint, config and model; True when the endpoint existed. Missing is fine."""
        from botocore.exceptions import ClientError

        existed = False
        calls = (
            (self.client.delete_endpoint, {"EndpointName": name}),
            (self.client.delete_endpoint_config, {"EndpointConfigName": name}),
            (self.client.delete_model, {"ModelName": name}),
        )
        with aws_errors(f"delete endpoint {name}"):
            for index, (call, kwargs) in enumerate(calls):
                try:
                    call(**kwargs)
                    existed = existed or index == 0
                except ClientError as exc:
                    if not _missing(exc):
                        raise
        return existed


def ensure_job_endpoint(
    store: TaskStore,
    endpoints: SageMakerEndpoints,
    settings: CloudSettings,
    catalog: BotCatalog,
    *,
    job_id: str,
    bot: str,
    model_version: str,
) -> dict[str, Any]:
    """The EnsureEndpoint step: record the endpoint as this job's, then create or reuse it."""
    job = store.get_job(job_id)
    if is_cancel_requested(job):
        raise JobCancelledError(f"job {job_id} was cancelled")
    image = settings.image_uris.get(bot)
    if image is None:
        spec = catalog.custom(bot)
        if spec is None:
            raise ConfigError(f"no image for bot {bot!r} in {envnames.IMAGE_URIS}")
        image = spec.image_uri
    name = resource_name(settings.endpoint_name_prefix, bot, model_version)
    merge_options(store, job_id, **{ENDPOINT_KEY: name})
    origin = job.opts.model_origin
    state = endpoints.ensure(
        name,
        image=image,
        model_data=origin if origin.startswith("s3://") else None,
        environment={envnames.BOT: bot, envnames.MODEL_VERSION: model_version},
        tags={"spotbot:bot": bot, "spotbot:model-version": model_version[:256]},
    )
    # The job pays for the endpoint from now (created or reused) until its cleanup lets go.
    usage: dict[str, Any] = {ENDPOINT_HOUR_USD: endpoint_hour_usd(endpoints.instance_type)}
    if not store.get_job(job_id).options.get(ENDPOINT_SINCE):  # a retried step: keep the start
        usage[ENDPOINT_SINCE] = utcnow()
    if state.created:
        usage[CREATED_KEY] = True
    merge_options(store, job_id, **usage)
    log.info(
        "endpoint %s for job %s: created=%s status=%s", name, job_id, state.created, state.status
    )
    return {"endpoint_name": state.name, "created": state.created, "status": state.status}


def other_users(store: TaskStore, job: Job, name: str) -> list[str]:
    """Ids of the other unfinished jobs that recorded `name` as their endpoint."""
    return [
        other.id
        for other in store.list_jobs(limit=USERS_SCAN_LIMIT)
        if other.id != job.id
        and other.opts.endpoint_name == name
        and not other.status.is_final
        and other.status != JobStatus.INTERRUPTED
    ]


def stop_endpoint_clock(store: TaskStore, job_id: str) -> None:
    """The job no longer uses its endpoint: its open period joins the hours it pays for."""
    job = store.get_job(job_id)
    if not job.options.get(ENDPOINT_SINCE):
        return
    seconds = round(endpoint_seconds(job), 3)
    merge_options(store, job_id, **{ENDPOINT_SECONDS: seconds, ENDPOINT_SINCE: None})


def release_job_endpoint(store: TaskStore, endpoints: SageMakerEndpoints, job: Job) -> bool:
    """Delete the job's endpoint unless another running job uses it; True when deleted now.
    Either way the job's endpoint hours stop counting here."""
    name = job.opts.endpoint_name
    if not name:
        return False
    users = other_users(store, job, str(name))
    if users:
        log.info("keeping endpoint %s: jobs %s still use it", name, ", ".join(users[:5]))
        deleted = False
    else:
        deleted = endpoints.delete(str(name))
    stop_endpoint_clock(store, job.id)
    return deleted


def idle_endpoints(store: TaskStore, endpoints: SageMakerEndpoints, prefix: str) -> list[str]:
    """This deployment's endpoints that run with no unfinished job using them: money burning.

    A job records its endpoint before creating it, and cleanup deletes it when the last user
    ends, so an endpoint found here is one a failed (or never run) cleanup left behind. The
    cleanup function counts them on a schedule; an alarm fires when the count stays above 0.
    """
    in_use = {
        job.opts.endpoint_name
        for job in store.list_jobs(limit=USERS_SCAN_LIMIT)
        if not job.status.is_final and job.status != JobStatus.INTERRUPTED
    }
    return [name for name in endpoints.running(prefix) if name not in in_use]
