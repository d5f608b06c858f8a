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
from collections.abc import Callable
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
    BotRemoved,
    BotView,
    CancelResult,
    ErrorBody,
    JobEstimate,
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
from spotbot.cloud.bots import register_custom_bot, remove_custom_bot
from spotbot.cloud.estimate import estimate_request
from spotbot.core import envnames
from spotbot.core.errors import (
    BotNotFoundError,
    BucketNotAllowedError,
    CloudServiceError,
    EnvironmentFault,
    ImageNotAllowedError,
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
from spotbot.core.store import MAX_SEARCH_DEPTH

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
        (403, "The bucket or image repository is not one this deployment may use"),
        (404, "No such job or bot"),
        (409, "The request clashes with the job's or bot's state (e.g. a bot in use)"),
        (413, "The request body is over 256 KB"),
        (415, "The body is not JSON (send Content-Type: application/json)"),
        (422, "The request does not match the schema (missing fields, wrong types)"),
        (500, "An unexpected error (logged; the detail says no more)"),
        (502, "An AWS service this API calls failed; retry"),
        (503, "The index is unavailable; retry"),
    )
}


def _ok(model: type[Any], text: str, status: int = 200) -> dict[int, OpenAPIResponse]:
    """An operation's documented success, with its model, beside every error it can answer."""
    return {status: {"description": text, "content": {"application/json": {"model": model}}}}


#: The one place spotbot's exceptions become HTTP codes; the first match (subclass first) wins.
ERROR_STATUS: tuple[tuple[type[Exception], HTTPStatus, str], ...] = (
    (BotNotFoundError, HTTPStatus.NOT_FOUND, "bot_not_found"),
    (JobNotFoundError, HTTPStatus.NOT_FOUND, "job_not_found"),
    (BucketNotAllowedError, HTTPStatus.FORBIDDEN, "bucket_not_allowed"),
    (ImageNotAllowedError, HTTPStatus.FORBIDDEN, "image_not_allowed"),
    (UnknownBotError, HTTPStatus.BAD_REQUEST, "unknown_bot"),
    (JobConflictError, HTTPStatus.CONFLICT, "conflict"),
    (SourceError, HTTPStatus.BAD_REQUEST, "bad_source"),
    (OutputError, HTTPStatus.BAD_REQUEST, "bad_output"),
    (ModelError, HTTPStatus.BAD_REQUEST, "bad_model"),
    (UsageError, HTTPStatus.BAD_REQUEST, "bad_request"),
    (StoreError, HTTPStatus.SERVICE_UNAVAILABLE, "index_unavailable"),
    (EnvironmentFault, HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"),
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


def route_not_found(app: Any) -> Callable[[NotFoundError], Response[str]]:
    """404 for a path the API does not have; 405 with Allow for a method a path does not take."""

    def handle(exc: NotFoundError) -> Response[str]:
        path = app.current_event.path
        allowed = sorted(
            {r.method for r in (*app._static_routes, *app._dynamic_routes) if r.rule.match(path)}
        )
        if not allowed:
            return error_response(HTTPStatus.NOT_FOUND, "not_found", "no such route")
        method = app.current_event.http_method
        response = error_response(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method_not_allowed",
            f"{path} does not take {method}; it takes {', '.join(allowed)}",
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response

    return handle


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
        202: {
            "description": "Job started",
            "content": {"application/json": {"model": JobStarted}},
        },
        200: {
            "description": "The client token named a job started before (JobStarted), or the"
            " estimate of a dry run (JobEstimate)",
            "content": {"application/json": {"model": JobStarted | JobEstimate}},
        },
        **_ERRORS,
    },
)
def create_job(request: Annotated[JobRequest, Body()]) -> Response[JobStarted | JobEstimate]:
    if request.dry_run:
        estimate = estimate_request(
            deployment.settings,
            deployment.catalog,
            request.model_dump(),
            s3=deployment.s3,
            ec2=deployment.ec2,
            pricing=deployment.pricing,
        )
        return _json(JobEstimate.model_validate(estimate))
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


@router.get("/jobs", responses={**_ok(JobList, "Recent jobs, newest first"), **_ERRORS})
def list_jobs(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> JobList:
    jobs = deployment.store.list_jobs(limit=limit)
    return JobList.model_validate({"jobs": [control.job_summary(j) for j in jobs]})


@router.get("/jobs/<job_id>", responses={**_ok(JobView, "The job: counts, rate, ETA"), **_ERRORS})
def get_job(job_id: JobId) -> JobView:
    view = control.job_view(deployment.store, deployment.stepfunctions, deployment.settings, job_id)
    return JobView.model_validate(view)


@router.delete("/jobs/<job_id>", responses={**_ok(CancelResult, "Cancelling", 202), **_ERRORS})
def cancel_job(job_id: JobId) -> Response[CancelResult]:
    result = control.cancel_job(deployment.store, deployment.batch, job_id)
    return _json(CancelResult.model_validate(result), HTTPStatus.ACCEPTED)


@router.post("/jobs/<job_id>/retry", responses={**_ok(RetryResult, "Retrying", 202), **_ERRORS})
def retry_job(
    job_id: JobId, request: Annotated[RetryRequest | None, Body()] = None
) -> Response[RetryResult]:
    body = request.model_dump(exclude_none=True) if request else {}
    result = control.retry_job(
        deployment.store, deployment.stepfunctions, deployment.settings, job_id, body
    )
    return _json(RetryResult.model_validate(result), HTTPStatus.ACCEPTED)


@router.get("/bots", responses={**_ok(BotList, "Installed and registered bots"), **_ERRORS})
def list_bots() -> BotList:
    return BotList.model_validate({"bots": deployment.catalog.describe_all()})


@router.get("/bots/<name>", responses={**_ok(BotView, "The bot"), **_ERRORS})
def get_bot(name: BotPath) -> BotView:
    return BotView.model_validate(deployment.catalog.describe(name))


@router.put(
    "/bots/<name>",
    responses={**_ok(BotView, "The bot, registered with its Batch job definition"), **_ERRORS},
)
def register_bot(name: BotPath, request: Annotated[BotRegistration, Body()]) -> BotView:
    deployment.settings.check_bucket_allowed(request.model_uri, "model")
    spec = register_custom_bot(
        deployment.catalog,
        deployment.job_definitions,
        deployment.store,
        CustomBotSpec(name=name, **request.model_dump()),
    )
    return BotView.model_validate(spec.describe())


@router.delete(
    "/bots/<name>",
    responses={**_ok(BotRemoved, "The bot is removed, its job definition deregistered"), **_ERRORS},
)
def remove_bot(name: BotPath) -> BotRemoved:
    result = remove_custom_bot(
        deployment.catalog, deployment.job_definitions, deployment.store, name
    )
    return BotRemoved.model_validate(result)


@router.get(
    "/bots/<name>/models", responses={**_ok(ModelList, "The bot's model versions"), **_ERRORS}
)
def list_models(name: BotPath) -> ModelList:
    deployment.catalog.describe(name)  # 404 for an unknown bot, not an empty list
    versions = deployment.resolver.registry.versions(name)
    return ModelList.model_validate({"bot": name, "versions": [m.to_dict() for m in versions]})


@router.get("/search", responses={**_ok(SearchResults, "Matching results"), **_ERRORS})
def search(
    q: Annotated[str, Query(min_length=1, max_length=512)],
    bot: Annotated[str | None, Query(max_length=63)] = None,
    job: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> SearchResults:
    offset = _offset_of(cursor)
    hits = deployment.store.search(q, bot=bot, job_id=job, limit=limit, offset=offset)
    more = len(hits) == limit and offset + limit < MAX_SEARCH_DEPTH
    return SearchResults.model_validate(
        {
            "query": q,
            "hits": [h.to_dict() for h in hits],
            "next_cursor": _cursor_for(offset + limit) if more else None,
        }
    )


def _cursor_for(offset: int) -> str:
    """An opaque page cursor: clients pass it back, never build one."""
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def _offset_of(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        offset = int(text[1:]) if text.startswith("o") and text[1:].isdigit() else -1
    except (ValueError, UnicodeDecodeError):
        offset = -1
    if not 0 <= offset < MAX_SEARCH_DEPTH:
        raise UsageError("invalid cursor: pass the next_cursor of a previous page")
    return offset


def build_resolver(
    resolver_cls: type[APIGatewayRestResolver] | type[APIGatewayHttpResolver],
) -> Any:
    app = resolver_cls(enable_validation=True)
    app.include_router(router)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(SpotbotError)(spotbot_error)
    app.exception_handler(NotFoundError)(route_not_found(app))
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


def _json_media_type(event: dict[str, Any]) -> str | None:
    """None when the body's Content-Type is JSON, else the type (to refuse it with a 415).

    JSON by another name (text/json, application/*+json, any case, with parameters) is
    accepted: the header is rewritten to application/json, the only spelling Powertools'
    validation takes (it fails anything else with an error its resolver does not map).
    A missing Content-Type is taken for JSON, as curl-like clients send.
    """
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field) or {}
        for name in [n for n in headers if n.lower() == "content-type"]:
            value = headers[name]
            raw = value[0] if isinstance(value, list) and value else value
            media = str(raw or "").split(";", 1)[0].strip().lower()
            is_json = media in ("", "application/json", "text/json") or (
                media.startswith("application/") and media.endswith("+json")
            )
            if not is_json:
                return media
            headers[name] = ["application/json"] if isinstance(value, list) else "application/json"
    return None


def refuse_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse a body before routing: not JSON by its type (415), over 256 KB (413), not JSON
    (400), not an object (422).

    Before routing because validation would parse a huge body first, and because Powertools
    reads a JSON array as its first element, which would let ``[{...}]`` pass as ``{...}``.
    """
    body = event.get("body")
    if not body:
        return None
    media = _json_media_type(event)
    if media is not None:
        detail = f"the body must be JSON (Content-Type: application/json), not {media!r}"
        return _refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", detail)
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
