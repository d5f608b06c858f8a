"""S3 as a source of assets and as the sink of results: ListObjectsV2 / GetObject / PutObject.

botocore is imported inside the methods that call S3: a local job never pays its ~0.1 s."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from spotbot.aws.clients import LazyClient
from spotbot.core.errors import AssetError, EnvironmentFault, OutputError, SourceError
from spotbot.core.sinks import ResultSink
from spotbot.core.sources import (
    PAGE_SIZE,
    ScanEntry,
    ScanPage,
    Source,
    is_hidden,
    parse_s3_uri,
    too_large,
)


class S3Source(Source):
    """Objects under s3://bucket/prefix, listed with ListObjectsV2 and read with GetObject."""

    client = LazyClient("s3")

    def __init__(self, uri: str, client: Any = None, concurrency: int = 16):
        self.uri = uri
        self.bucket, prefix = parse_s3_uri(uri)
        # s3://bucket/photos means the "folder" photos/, not every key starting with "photos".
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._client = client
        self._concurrency = concurrency

    def scan_pages(
        self, token: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[ScanPage]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        config: dict[str, Any] = {"PageSize": min(page_size, PAGE_SIZE)}
        if token:
            config["StartingToken"] = token
        try:
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=self.prefix, PaginationConfig=config
            )
            for page in pages:
                entries = [
                    ScanEntry(
                        obj["Key"][len(self.prefix) :],
                        obj["Size"],
                        fingerprint=str(obj.get("ETag", "")).strip('"') or None,
                    )
                    for obj in page.get("Contents", [])
                    if not obj["Key"].endswith("/")  # folder markers made by consoles
                ]
                entries = [e for e in entries if e.key and not is_hidden(e.key)]
                yield ScanPage(entries, next_token=page.get("NextContinuationToken"))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Error")
            raise SourceError(f"cannot list {self.uri}: {code}") from exc
        except BotoCoreError as exc:
            raise SourceError(f"cannot list {self.uri}: {exc}") from exc

    def object_key(self, key: str) -> str:
        return self.prefix + key

    def read(self, key: str, max_bytes: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                response["Body"].close()
                raise too_large(size, max_bytes)
            # Ask for what the object holds (+1 shows a length that lied), not for the cap:
            # http.client allocates the whole amount asked for, 50 MB for a 1 kB object.
            want = (size if "ContentLength" in response else max_bytes) + 1
            data: bytes = response["Body"].read(min(want, max_bytes + 1))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Error")
            raise AssetError(
                f"cannot read s3://{self.bucket}/{self.object_key(key)}: {code}"
            ) from None
        except BotoCoreError as exc:
            raise AssetError(
                f"cannot read s3://{self.bucket}/{self.object_key(key)}: {exc}"
            ) from None
        if len(data) > max_bytes:
            raise too_large(len(data), max_bytes)
        return data


class S3Sink(ResultSink):
    """s3://bucket/prefix/<job_id>/...: S3 PUTs are atomic per object, so a retry just overwrites."""

    client = LazyClient("s3")

    def __init__(self, uri: str, client: Any = None):
        self.uri = uri.rstrip("/")
        self.bucket, prefix = parse_s3_uri(uri)
        self.prefix = prefix.strip("/")
        self._client = client

    def _key(self, job_id: str, relpath: str) -> str:
        return "/".join(p for p in (self.prefix, job_id, relpath) if p)

    def check_writable(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise OutputError(
                f"output bucket is not reachable: s3://{self.bucket} ({exc})"
            ) from None

    def put(self, job_id: str, relpath: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(job_id, relpath),
                Body=data,
                ContentType=content_type,
            )
        except (ClientError, BotoCoreError) as exc:  # past the client's own retries
            raise EnvironmentFault(f"cannot write {self.location(job_id, relpath)}: {exc}") from exc

    def put_lines(self, job_id: str, relpath: str, lines: Iterable[bytes]) -> int:
        # Spool to disk and upload once: multipart upload keeps memory flat for millions of lines.
        count = 0
        with tempfile.TemporaryFile() as spool:
            for line in lines:
                spool.write(line + b"\n")
                count += 1
            spool.seek(0)
            self.client.upload_fileobj(
                spool,
                self.bucket,
                self._key(job_id, relpath),
                ExtraArgs={"ContentType": "application/x-ndjson"},
            )
        return count

    def location(self, job_id: str, relpath: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(job_id, relpath)}"
