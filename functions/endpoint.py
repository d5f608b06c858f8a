"""The endpoint function (EnsureEndpoint): create or reuse the SageMaker endpoint of a job's model."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.deployment import Deployment
from functions.events import EndpointEvent
from spotbot.cloud.endpoints import ensure_job_endpoint
from spotbot.core import envnames

logger = Logger()
tracer = Tracer()
metrics = Metrics()
deployment = Deployment(envnames.SAGEMAKER_ROLE_ARN, envnames.IMAGE_URIS)


@logger.inject_lambda_context(correlation_id_path="job_id")
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Never waits for InService: the state machine polls DescribeEndpoint with Wait states.
    request = EndpointEvent.model_validate(event)
    result = ensure_job_endpoint(
        deployment.store,
        deployment.endpoints,
        deployment.settings,
        deployment.catalog,
        job_id=request.job_id,
        bot=request.bot,
        model_version=request.model_version,
    )
    logger.info("endpoint ensured", extra={"endpoint": result})
    if result["created"]:
        metrics.add_metric(name="EndpointsCreated", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="EndpointsReused", unit=MetricUnit.Count, value=1)
    return result
