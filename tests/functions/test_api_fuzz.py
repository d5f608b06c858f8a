"""The API keeps its contract under a fuzzer: schemathesis generates requests from the
committed OpenAPI document and sends them through API Gateway REST proxy events to the
handler (moto and the OpenSearch stand-in behind it). No 5xx, and every status code,
content type and body matches what the document says."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.functions.api_wsgi import ApiGatewayWsgi

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]

DOCUMENT = Path(__file__).resolve().parents[2] / "functions" / "openapi.json"
schema = schemathesis.openapi.from_path(DOCUMENT)


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,  # a fixed seed: the same requests on every run
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_its_documented_contract(
    case: Any, load_handler: Callable[[str], ModuleType], lambda_context: Any
) -> None:
    api = load_handler("api")
    # Every check but one: a request the schema allows may still name a bot that is not
    # installed or a bucket that does not exist, which the API rightly answers 400.
    case.call_and_validate(
        app=ApiGatewayWsgi(api.lambda_handler, lambda_context),
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("multipart/form-data", 415),
        ("application/x-www-form-urlencoded", 415),
        ("Application/JSON", 202),
        ("text/json", 202),
        ("application/vnd.api+json", 202),
        ("application/json; charset=utf-8", 202),
    ],
)
def test_a_body_the_api_cannot_read_as_json_is_a_415(
    load_handler: Callable[[str], ModuleType], lambda_context: Any, content_type: str, status: int
) -> None:
    from tests.functions.conftest import INPUT, OUTPUT, api_event

    api = load_handler("api")
    body = {"bot": "ocr-zh", "source": f"s3://{INPUT}/x/", "output": f"s3://{OUTPUT}/y/"}
    event = api_event("v1", "POST", "/jobs", body=body)
    event["headers"]["Content-Type"] = content_type
    event["multiValueHeaders"]["Content-Type"] = [content_type]
    response = api.lambda_handler(event, lambda_context)
    assert response["statusCode"] == status, response
    if status == 415:
        answer = json.loads(response["body"])
        assert (
            answer["error"] == "unsupported_media_type" and content_type.lower() in answer["detail"]
        )
