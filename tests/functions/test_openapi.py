"""The committed OpenAPI document, the resolver it comes from, and the infra that deploys both."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("aws_lambda_powertools")

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> str:
    import sys

    for name in ("functions.api", "functions.openapi"):
        sys.modules.pop(name, None)
    monkeypatch.delenv("SPOTBOT_OPENSEARCH_ENDPOINT", raising=False)
    from functions.openapi import render

    text = render()
    sys.modules.pop("functions.api", None)
    return text


def test_committed_openapi_matches_the_resolver(rendered: str) -> None:
    committed = (FUNCTIONS / "openapi.json").read_text(encoding="utf-8")
    assert committed == rendered, "functions/openapi.json is stale: run python -m functions.openapi"


def test_openapi_paths_are_the_routes_infra_deploys(rendered: str) -> None:
    from infra.api import ROUTES  # the API Gateway resources and methods

    documented = {
        (re.sub(r"\{[^}]+\}", "{}", path), method.upper())
        for path, methods in json.loads(rendered)["paths"].items()
        for method in methods
    }
    deployed = {
        (re.sub(r"\{[^}]+\}", "{}", path), method) for path, methods in ROUTES for method in methods
    }
    assert documented == deployed


def test_every_infra_handler_has_a_lambda_handler() -> None:
    from infra.functions import HANDLERS

    for name in HANDLERS:
        tree = ast.parse((FUNCTIONS / f"{name}.py").read_text(encoding="utf-8"))
        handlers = [
            n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"
        ]
        assert len(handlers) == 1, name
        assert handlers[0].decorator_list, f"{name}.lambda_handler has no Powertools decorators"
