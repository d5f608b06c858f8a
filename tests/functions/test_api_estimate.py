"""POST /jobs with "dry_run": true: the estimate of a job, under moto, starting nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from spotbot.core import envnames
from tests.functions.conftest import FOREIGN, INPUT, OUTPUT, api_event, response_json

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

DRY = {
    "bot": "car-model",
    "source": f"s3://{INPUT}/photos/",
    "output": f"s3://{OUTPUT}/tags/",
    "dry_run": True,
}


@pytest.fixture
def api(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("api")


def _photos(s3: Any, count: int, size: int = 1000) -> None:
    for i in range(count):
        s3.put_object(Bucket=INPUT, Key=f"photos/{i:04d}.jpg", Body=b"x" * size)
    s3.put_object(Bucket=INPUT, Key="photos/readme.txt", Body=b"not a photo")


def test_dry_run_answers_an_estimate_and_starts_no_execution(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any]
) -> None:
    # GIVEN 30 photos and a text file under the source
    _photos(aws["s3"], 30)
    # WHEN a dry run is posted for two instance types
    body = {**DRY, "instance_types": ["c6i.xlarge", "m6i.xlarge"]}
    response = api.lambda_handler(api_event("v1", "POST", "/jobs", body=body), lambda_context)
    est = response_json(response)
    # THEN 200 with the photos counted, both types priced, and Rekognition beside them
    assert response["statusCode"] == 200, est
    assert est["dry_run"] is True
    assert est["sample"] == {
        "listed": 31,
        "accepted": 30,
        "accepted_bytes": 30_000,
        "pages": 1,
        "complete": True,
    }
    assert [c["instance_type"] for c in est["compute"]] == ["c6i.xlarge", "m6i.xlarge"]
    assert all(c["on_demand_usd"] > 0 for c in est["compute"])
    assert est["managed"]["usd"] == pytest.approx(0.03)
    assert est["request_counts"]["list"] == 1
    # moto's Spot price history answers (0.00001 USD an hour): live prices are used
    assert "DescribeSpotPriceHistory" in est["compute"][0]["price_source"]
    assert est["compute"][0]["spot_usd"] < est["compute"][0]["on_demand_usd"]
    # and nothing started
    executions = aws["stepfunctions"].list_executions(
        stateMachineArn=api.deployment.settings.state_machine_arn
    )["executions"]
    assert executions == []


def test_stack_config_prices_override_the_table(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN stack-configured prices for an instance type moto has no Spot offering for
    prices = {"x2custom.large": {"vcpus": 2, "on_demand": 1.0, "spot": 0.5}}
    monkeypatch.setenv(envnames.INSTANCE_PRICES, json.dumps(prices))
    _photos(aws["s3"], 3)
    from spotbot.cloud.estimate import stack_prices
    from spotbot.core.cost import default_prices

    book = stack_prices(default_prices())
    assert book.instance("x2custom.large").source == "stack config"
    assert book.instance("c6i.xlarge").source.startswith("table ")


def test_dry_run_of_an_unpriced_instance_type_is_a_400(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any]
) -> None:
    body = {**DRY, "instance_types": ["z9.mega"]}
    response = api.lambda_handler(api_event("v1", "POST", "/jobs", body=body), lambda_context)
    assert response["statusCode"] == 400
    assert "no price for instance types ['z9.mega']" in response_json(response)["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {**DRY, "dry_run": "yes"},
        {**DRY, "instance_types": []},
        {**DRY, "instance_types": ["not a type"]},
    ],
)
def test_dry_run_fields_are_validated(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any], body: dict[str, Any]
) -> None:
    response = api.lambda_handler(api_event("v1", "POST", "/jobs", body=body), lambda_context)
    assert response["statusCode"] == 422


def test_dry_run_of_a_foreign_bucket_is_refused(
    api: ModuleType, lambda_context: Any, aws: dict[str, Any]
) -> None:
    body = {**DRY, "source": f"s3://{FOREIGN}/x/"}
    response = api.lambda_handler(api_event("v1", "POST", "/jobs", body=body), lambda_context)
    assert response["statusCode"] == 403
