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


def test_s3_throttling_is_retried_with_the_clients_own_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from botocore.awsrequest import AWSResponse
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="bucket")
        boto3.client("s3").put_object(Bucket="bucket", Key="p/a.txt", Body=b"hello")
        source = S3Source("s3://bucket/p")
        refused: list[int] = []

        class Raw:  # what botocore reads an error response's body from
            def stream(self, **kwargs: object) -> list[bytes]:
                return [b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"]

        def slow_down(request: object, **kwargs: object) -> AWSResponse | None:
            if len(refused) < 3:  # S3 asks this caller to slow down, three times
                refused.append(503)
                return AWSResponse("https://bucket.s3.amazonaws.com/p/a.txt", 503, {}, Raw())
            return None

        source.client.meta.events.register_first("before-send.s3.GetObject", slow_down)
        # WHEN the worker reads the asset THEN it gets it, after the client's retries
        assert source.read("a.txt", 1024) == b"hello"
        assert refused == [503, 503, 503]
