"""Opening a source or a sink from what a user typed: a folder, or an s3:// URI."""

from __future__ import annotations

from typing import Any

from spotbot.aws.s3 import S3Sink, S3Source
from spotbot.aws.s3_inventory import S3InventorySource, is_inventory_manifest
from spotbot.aws.settings import CloudSettings
from spotbot.core.errors import OutputError, SourceError
from spotbot.core.sinks import LocalSink, ResultSink
from spotbot.core.sources import LocalSource, Source


def open_source(uri: str, **kwargs: Any) -> Source:
    """The Source for a folder path, an s3:// URI, or an S3 Inventory manifest.json's URI."""
    if is_inventory_manifest(uri):
        return S3InventorySource(uri, **kwargs)
    if uri.startswith("s3://"):
        return S3Source(uri, **kwargs)
    if "://" in uri:
        raise SourceError(f"unsupported source {uri!r}: use a folder or s3://bucket/prefix")
    return LocalSource(uri)


def open_sink(uri: str, **kwargs: Any) -> ResultSink:
    if uri.startswith("s3://"):
        return S3Sink(uri, **kwargs)
    if "://" in uri:
        raise OutputError(f"unsupported output {uri!r}: use a folder or s3://bucket/prefix")
    return LocalSink(uri)


def open_cloud_source(uri: str, settings: CloudSettings, client: Any = None) -> Source:
    """A cloud job's source: an s3:// prefix, or an S3 Inventory manifest whose inventoried
    bucket must be one the deployment may read, like any source bucket."""
    source = open_source(uri, client=client)
    if isinstance(source, S3InventorySource):
        settings.check_bucket_allowed(f"s3://{source.bucket}/", "source")
    return source
