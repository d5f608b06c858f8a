"""The cleanup function (CleanupJob, and EventBridge for stopped executions): stop what a job
started, delete its endpoint unless another running job uses it, set its final status.

On a schedule (an EventBridge "Scheduled Event") it instead counts the endpoints left in
service with no unfinished job using them, as the metric ``IdleEndpoints``: the alarm beside
the cleanup-failed one (infra/notifications.py) watches it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.deployment import Deployment
from functions.events import CleanupEvent
from spotbot.cloud.endpoints import idle_endpoints, release_job_endpoint
from spotbot.cloud.steps import cleanup_step
from spotbot.core import envnames
from spotbot.core.records import Job

logger = Logger()
tracer = Tracer()
metrics = Metrics()
deployment = Deployment(envnames.JOB_QUEUE_ARN)
SCHEDULED_EVENT = "Scheduled Event"  # EventBridge's detail-type for a schedule's invocation


def release_endpoint(job: Job) -> bool:
    return release_job_endpoint(deployment.store, deployment.endpoints, job)


def count_idle_endpoints() -> dict[str, Any]:
    prefix = deployment.settings.endpoint_name_prefix
    idle = idle_endpoints(deployment.store, deployment.endpoints, prefix)
    if idle:
        logger.warning("endpoints in service with no running job", extra={"endpoints": idle})
    metrics.add_metric(name="IdleEndpoints", unit=MetricUnit.Count, value=len(idle))
    return {"idle_endpoints": idle}


@logger.inject_lambda_context(correlation_id_path="execution_name || detail.name")
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("detail-type") == SCHEDULED_EVENT:
        return count_idle_endpoints()
    request = CleanupEvent.model_validate(event)
    result = cleanup_step(
        deployment.store,
        deployment.batch,
        release_endpoint,
        job_id=request.job_id,
        outcome_status=request.outcome.status,
        error=request.outcome.failure.Error,
        cause=request.outcome.failure.Cause,
        announce=deployment.job_events.job_ended,
    )
    logger.info("job cleaned up", extra={"cleanup": result})
    metrics.add_metric(
        name=f"Jobs{result['status'].title().replace('_', '')}", unit=MetricUnit.Count, value=1
    )
    if result["endpoint_deleted"]:
        metrics.add_metric(name="EndpointsDeleted", unit=MetricUnit.Count, value=1)
    return result
