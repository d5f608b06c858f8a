"""The finalize function (FinalizeJob): counts, summary.json and results.jsonl, the final status."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.deployment import Deployment
from functions.events import FinalizeEvent
from spotbot.cloud.steps import finalize_step

logger = Logger()
tracer = Tracer()
metrics = Metrics()
deployment = Deployment()


@logger.inject_lambda_context(correlation_id_path="job_id")
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FinalizeEvent.model_validate(event)
    # A job over its failure threshold is a result, not an error: FAILED comes back as data
    # and the machine records it; only a step that could not finalize raises.
    result = finalize_step(
        deployment.store,
        deployment.s3,
        job_id=request.job_id,
        max_failure_pct=request.max_failure_pct,
    )
    logger.info("job finalized", extra={"status": result["status"], "counts": result["counts"]})
    metrics.add_metric(name="AssetsDone", unit=MetricUnit.Count, value=result["counts"]["done"])
    metrics.add_metric(name="AssetsFailed", unit=MetricUnit.Count, value=result["counts"]["failed"])
    return result
