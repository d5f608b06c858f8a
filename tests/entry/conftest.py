"""Fixtures of the entry tests: `spotbot cloud` talks to the API in the deployment the function
tests build (moto in process, the OpenSearch stand-in), so their fixtures are shared here."""

from tests.functions.conftest import (  # noqa: F401
    aws,
    cloud_env,
    lambda_context,
    load_handler,
    store,
)
