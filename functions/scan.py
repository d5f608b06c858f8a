"""The scan function (ScanAssets, looped): list the source from its token until a time budget."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.deployment import Deployment
from functions.events import ScanEvent
from spotbot.cloud.steps import scan_step

logger = Logger()
tracer = Tracer()
metrics = Metrics()
deployment = Deployment()

#: Seconds kept back from the Lambda timeout: the last page's bulk write and the reply.
TIMEOUT_MARGIN_SECONDS = 60.0


def budget(requested: float, context: LambdaContext) -> float:
    """The requested budget, shortened when the invocation has less time left than that."""
    left = context.get_remaining_time_in_millis() / 1000 - TIMEOUT_MARGIN_SECONDS
    return max(min(requested, left), 1.0)


@logger.inject_lambda_context(correlation_id_path="job_id")
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ScanEvent.model_validate(event)
    cursor = scan_step(
        deployment.store,
        deployment.catalog,
        deployment.s3,
        job_id=request.job_id,
        budget_seconds=budget(request.budget_seconds, context),
        pages_before=request.cursor.pages,
        max_pages=request.max_pages,
    )
    logger.info(
        "scan slice",
        extra={"cursor": {k: v for k, v in cursor.items() if k != "continuation_token"}},
    )
    metrics.add_metric(
        name="PagesScanned", unit=MetricUnit.Count, value=cursor["pages"] - request.cursor.pages
    )
    return cursor
