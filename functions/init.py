"""The init function (InitJob): validate a job request, resolve the model, record the job."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.deployment import Deployment
from functions.events import InitEvent
from spotbot.cloud.steps import init_step
from spotbot.core import envnames

logger = Logger()
tracer = Tracer()
metrics = Metrics()
deployment = Deployment(envnames.ARTIFACTS_BUCKET, envnames.ALLOWED_BUCKETS)


@logger.inject_lambda_context(correlation_id_path="execution_name")
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # UnknownBotError, SourceError, BucketNotAllowedError...: the machine catches them by name.
    request = InitEvent.model_validate(event)
    plan = init_step(
        deployment.store,
        deployment.settings,
        deployment.catalog,
        deployment.resolver,
        deployment.s3,
        job_id=request.job_id,
        request=request.request.model_dump(exclude_none=True),
        job_definitions=request.job_definitions,
        limits=request.limits.to_limits(),
    )
    logger.info(
        "job recorded",
        extra={
            "bot": plan["bot"],
            "model_version": plan["model_version"],
            "shards": plan["shards"],
        },
    )
    metrics.add_metric(name="JobsInitialised", unit=MetricUnit.Count, value=1)
    return plan
