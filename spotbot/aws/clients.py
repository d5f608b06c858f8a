"""boto3 clients made on first use, with adaptive retries, and AWS errors as spotbot's own.

No client is created at import time: a Lambda's cold start and the tests' moto decide when.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from spotbot.core.errors import CloudServiceError

#: Retries for every client: the functions and workers call AWS in bursts (scan loops,
#: cancels, thousands of GETs), and adaptive mode backs off on throttling by itself.
RETRIES = {"max_attempts": 8, "mode": "adaptive"}


def boto_client(service: str, region: str | None = None, max_pool_connections: int = 10) -> Any:
    """A client with adaptive retries (a pool of `max_pool_connections` for parallel reads)."""
    import boto3
    from botocore.config import Config

    config = Config(retries=dict(RETRIES), max_pool_connections=max(10, max_pool_connections))
    return boto3.client(service, region_name=region, config=config)


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise CloudServiceError(f"could not {what}: {error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise CloudServiceError(f"could not {what}: {exc}") from exc


class LazyClient:
    """A client attribute made on first use: `client = LazyClient("s3")` on an adapter class.

    The adapter may set `self._client` (tests hand in moto's); otherwise the first read
    creates one with `boto_client`, sized by the adapter's `_concurrency` when it has one.
    """

    def __init__(self, service: str):
        self.service = service

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = f"_{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        client = getattr(obj, self.attr, None)
        if client is None:
            pool = int(getattr(obj, "_concurrency", 10) or 10)
            client = boto_client(self.service, max_pool_connections=pool)
            setattr(obj, self.attr, client)
        return client

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.attr, value)
