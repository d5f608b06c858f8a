"""The requeue function (RequeueTasks, retry machine): put a job's failed tasks back to PENDING."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.deployment import Deployment
from functions.events import InitEvent
from spotbot.cloud.steps import requeue_step

logger = Logger()
tracer = Tracer()
metrics = Metrics()
deployment = Deployment()


@logger.inject_lambda_context(correlation_id_path="request.job_id")
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = InitEvent.model_validate(event)
    plan = requeue_step(
        deployment.store,
        job_id=request.job_id,
        request=request.request.model_dump(exclude_none=True),
        job_definitions=request.job_definitions,
        limits=request.limits.to_limits(),
        catalog=deployment.catalog,  # a custom bot's job definition is in its document
    )
    logger.info("tasks requeued", extra={"requeued": plan["requeued"]})
    metrics.add_metric(name="TasksRequeued", unit=MetricUnit.Count, value=plan["requeued"])
    return plan
