"""The api function: the REST API of DESIGN.md on Powertools' resolver, validated with pydantic.

One router serves API Gateway REST (v1) and HTTP API (v2) proxy events. Errors are JSON
``{"error", "detail"}``: client mistakes get a 4xx from :data:`ERROR_STATUS` (the one map from
spotbot's exceptions to HTTP codes); anything unexpected is logged and answered 500 with a
generic message, never a stack trace. ``functions/openapi.json`` is generated from this module
(``python -m functions.openapi``) and a test keeps it in step.
"""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api_models import (
    MAX_BODY_BYTES,
    BotList,
    BotRegistration,
    BotView,
    CancelResult,
    ErrorBody,
    JobList,
    JobRequest,
    JobStarted,
    JobView,
    ModelList,
    RetryRequest,
    RetryResult,
    SearchResults,
)
from functions.deployment import Deployment
from spotbot.aws.catalog import CustomBotSpec
from spotbot.cloud import control
from spotbot.core import envnames
from spotbot.core.errors import (
    BotNotFoundError,
    BucketNotAllowedError,
    CloudServiceError,
    JobConflictError,
    JobNotFoundError,
    ModelError,
    OutputError,
    SourceError,
    SpotbotError,
    StoreError,
    UnknownBotError,
    UsageError,
)

logger = Logger()
tracer = Tracer()
metrics = Metrics()
deployment = Deployment(
    envnames.ARTIFACTS_BUCKET,
    envnames.ALLOWED_BUCKETS,
    envnames.STATE_MACHINE_ARN,
    envnames.RETRY_STATE_MACHINE_ARN,
)
router = Router()

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,80}$")]
BotPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
_ERRORS: dict[int, OpenAPIResponse] = {
    code: {"description": text, "content": {"application/json": {"model": ErrorBody}}}
    for code, text in (
        (400, "Bad request: malformed JSON, unknown bot, unusable source or output"),
        (403, "The source or output bucket is not one this deployment may use"),
        (404, "No such job or bot"),
        (409, "The request clashes with the job's state"),
        (413, "The request body is over 256 KB"),
        (422, "The request does not match the schema (missing fields, wrong types)"),
    )
}

#: The one place spotbot's exceptions become HTTP codes; the first match (subclass first) wins.
ERROR_STATUS: tuple[tuple[type[Exception], HTTPStatus, str], ...] = (
    (BotNotFoundError, HTTPStatus.NOT_FOUND, "bot_not_found"),
    (JobNotFoundError, HTTPStatus.NOT_FOUND, "job_not_found"),
    (BucketNotAllowedError, HTTPStatus.FORBIDDEN, "bucket_not_allowed"),
    (UnknownBotError, HTTPStatus.BAD_REQUEST, "unknown_bot"),
    (JobConflictError, HTTPStatus.CONFLICT, "conflict"),
    (SourceError, HTTPStatus.BAD_REQUEST, "bad_source"),
    (OutputError, HTTPStatus.BAD_REQUEST, "bad_output"),
    (ModelError, HTTPStatus.BAD_REQUEST, "bad_model"),
    (UsageError, HTTPStatus.BAD_REQUEST, "bad_request"),
    (StoreError, HTTPStatus.SERVICE_UNAVAILABLE, "index_unavailable"),
    (CloudServiceError, HTTPStatus.BAD_GATEWAY, "aws_error"),
)


def error_response(status: HTTPStatus, error: str, detail: Any) -> Response[str]:
    body = json.dumps({"error": error, "detail": detail}, ensure_ascii=False)
    return Response(status_code=int(status), content_type=content_types.APPLICATION_JSON, body=body)


def spotbot_error(exc: SpotbotError) -> Response[str]:
    for cls, status, code in ERROR_STATUS:
        if isinstance(exc, cls):
            if status >= 500:
                logger.exception("service dependency failed")
                return error_response(status, code, "a service this API depends on failed; retry")
            return error_response(status, code, str(exc))
    return unexpected_error(exc)


def validation_error(exc: RequestValidationError) -> Response[str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(
            HTTPStatus.BAD_REQUEST, "malformed_json", "the body is not valid JSON"
        )
    # loc and msg only: pydantic's input echo could be large and the url is noise.
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", e.get("type"))} for e in errors]
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", detail)


def route_not_found(exc: NotFoundError) -> Response[str]:
    return error_response(HTTPStatus.NOT_FOUND, "not_found", "no such route")


def unexpected_error(exc: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error")


def _json(model: Any, status: HTTPStatus = HTTPStatus.OK) -> Response[Any]:
    return Response(
        status_code=int(status), content_type=content_types.APPLICATION_JSON, body=model
    )


# --- routes ------------------------------------------------------------------------------
@router.post(
    "/jobs",
    responses={
        202: {"description": "Job started"},
        200: {
            "description": "The client token named a job started before",
            "content": {"application/json": {"model": JobStarted}},
        },
        **_ERRORS,
    },
)
def create_job(request: Annotated[JobRequest, Body()]) -> Response[JobStarted]:
    job_id, started = control.start_job(
        deployment.settings,
        deployment.catalog,
        deployment.resolver,
        deployment.stepfunctions,
        request.model_dump(),
    )
    metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=int(started))
    body = JobStarted(job_id=job_id, created=started, status_url=f"/jobs/{job_id}")
    return _json(body, HTTPStatus.ACCEPTED if started else HTTPStatus.OK)


@router.get("/jobs", responses=_ERRORS)
def list_jobs(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> JobList:
    jobs = deployment.store.list_jobs(limit=limit)
    return JobList.model_validate({"jobs": [control.job_summary(j) for j in jobs]})


@router.get("/jobs/<job_id>", responses=_ERRORS)
def get_job(job_id: JobId) -> JobView:
    view = control.job_view(deployment.store, deployment.stepfunctions, deployment.settings, job_id)
    return JobView.model_validate(view)


@router.delete("/jobs/<job_id>", responses={202: {"description": "Cancelling"}, **_ERRORS})
def cancel_job(job_id: JobId) -> Response[CancelResult]:
    result = control.cancel_job(deployment.store, deployment.batch, job_id)
    return _json(CancelResult.model_validate(result), HTTPStatus.ACCEPTED)


@router.post("/jobs/<job_id>/retry", responses={202: {"description": "Retrying"}, **_ERRORS})
def retry_job(
    job_id: JobId, request: Annotated[RetryRequest | None, Body()] = None
) -> Response[RetryResult]:
    body = request.model_dump(exclude_none=True) if request else {}
    result = control.retry_job(
        deployment.store, deployment.stepfunctions, deployment.settings, job_id, body
    )
    return _json(RetryResult.model_validate(result), HTTPStatus.ACCEPTED)


@router.get("/bots", responses=_ERRORS)
def list_bots() -> BotList:
    return BotList.model_validate({"bots": deployment.catalog.describe_all()})


@router.get("/bots/<name>", responses=_ERRORS)
def get_bot(name: BotPath) -> BotView:
    return BotView.model_validate(deployment.catalog.describe(name))


@router.put("/bots/<name>", responses=_ERRORS)
def register_bot(name: BotPath, request: Annotated[BotRegistration, Body()]) -> BotView:
    deployment.settings.check_bucket_allowed(request.model_uri, "model")
    spec = deployment.catalog.register(CustomBotSpec(name=name, **request.model_dump()))
    return BotView.model_validate(spec.describe())


@router.get("/bots/<name>/models", responses=_ERRORS)
def list_models(name: BotPath) -> ModelList:
    deployment.catalog.describe(name)  # 404 for an unknown bot, not an empty list
    versions = deployment.resolver.registry.versions(name)
    return ModelList.model_validate({"bot": name, "versions": [m.to_dict() for m in versions]})


@router.get("/search", responses=_ERRORS)
def search(
    q: Annotated[str, Query(min_length=1, max_length=512)],
    bot: Annotated[str | None, Query(max_length=63)] = None,
    job: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchResults:
    hits = deployment.store.search(q, bot=bot, job_id=job, limit=limit)
    return SearchResults.model_validate({"query": q, "hits": [h.to_dict() for h in hits]})


def build_resolver(
    resolver_cls: type[APIGatewayRestResolver] | type[APIGatewayHttpResolver],
) -> Any:
    app = resolver_cls(enable_validation=True)
    app.include_router(router)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(SpotbotError)(spotbot_error)
    app.exception_handler(NotFoundError)(route_not_found)
    app.exception_handler(Exception)(unexpected_error)
    return app


rest_app = build_resolver(APIGatewayRestResolver)
http_app = build_resolver(APIGatewayHttpResolver)


def _refusal(status: HTTPStatus, error: str, detail: str) -> dict[str, Any]:
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps({"error": error, "detail": detail}),
        "isBase64Encoded": False,
    }


def refuse_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse a body before routing: over 256 KB (413), not JSON (400), not an object (422).

    Before routing because validation would parse a huge body first, and because Powertools
    reads a JSON array as its first element, which would let ``[{...}]`` pass as ``{...}``.
    """
    body = event.get("body")
    if not body:
        return None
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
    if size > MAX_BODY_BYTES:
        detail = f"the body is {size} bytes; at most {MAX_BODY_BYTES} are accepted"
        return _refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", detail)
    try:
        text = base64.b64decode(body) if event.get("isBase64Encoded") else body
        parsed = json.loads(text)
    except (ValueError, TypeError):
        return _refusal(HTTPStatus.BAD_REQUEST, "malformed_json", "the body is not valid JSON")
    if not isinstance(parsed, dict):
        detail = "the body must be a JSON object"
        return _refusal(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", detail)
    return None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    refused = refuse_body(event)
    if refused is not None:
        return refused
    app = http_app if event.get("version") == "2.0" else rest_app
    return dict(app.resolve(event, context))
