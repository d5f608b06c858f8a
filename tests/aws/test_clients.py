"""Adapters' boto3 clients: made on first use (never at import), or handed in by the caller."""

from __future__ import annotations

import pytest

from spotbot.aws.clients import LazyClient
from spotbot.aws.s3 import S3Sink, S3Source


def test_a_client_is_made_on_first_use_with_adaptive_retries_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    source = S3Source("s3://bucket/prefix", concurrency=32)
    assert source._client is None  # nothing made by the constructor
    client = source.client
    assert client is source.client
    assert client.meta.config.retries["mode"] == "adaptive"
    assert client.meta.config.max_pool_connections == 32


def test_a_handed_in_client_is_used() -> None:
    sentinel = object()
    assert S3Sink("s3://bucket/out", client=sentinel).client is sentinel
    assert isinstance(S3Sink.__dict__["client"], LazyClient)
