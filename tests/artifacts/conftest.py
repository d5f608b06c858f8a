"""Fixtures of the artifact tests: the built function package and what Lambda gives it."""

from __future__ import annotations

import pytest

from infra.lambda_package import LambdaPackage
from tests import lambda_support


@pytest.fixture(scope="session")
def lambda_package() -> LambdaPackage:
    return lambda_support.lambda_package()


@pytest.fixture(scope="session")
def lambda_runtime() -> lambda_support.LambdaRuntime:
    return lambda_support.lambda_runtime()
