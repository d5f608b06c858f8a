"""An S3 Inventory report as a source: its manifest.json lists the bucket, so nothing is listed.

A bucket of tens of millions of objects takes hours and thousands of LIST requests to list;
its daily or weekly inventory (CSV or Parquet files named by a manifest) holds the same keys,
sizes and ETags. The source's URI is the manifest's: s3://inventory-bucket/.../manifest.json.
Keys are the source bucket's full keys; assets are read from the source bucket.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

from spotbot.aws.s3 import S3Source
from spotbot.core.errors import SourceError
from spotbot.core.sources import PAGE_SIZE, ScanEntry, ScanPage, is_hidden, parse_s3_uri

MANIFEST_NAME = "manifest.json"
FORMATS = ("CSV", "Parquet")


def is_inventory_manifest(uri: str) -> bool:
    return uri.startswith("s3://") and uri.rstrip("/").endswith("/" + MANIFEST_NAME)


class S3InventorySource(S3Source):
    """The objects an S3 Inventory report lists (current versions, no delete markers)."""

    def __init__(self, uri: str, client: Any = None, concurrency: int = 16):
        self.uri = uri
        self.manifest_bucket, self.manifest_key = parse_s3_uri(uri)
        self._client = client
        self._concurrency = concurrency
        self.prefix = ""
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    @property
    def bucket(self) -> str:  # type: ignore[override]  # S3Source's attribute, read-only here
        """The inventoried bucket, where the assets are read (S3Source.read uses it)."""
        return str(self.manifest["sourceBucket"]).removeprefix("arn:aws:s3:::")

    def _get(self, bucket: str, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Error")
            raise SourceError(f"cannot read the inventory s3://{bucket}/{key}: {code}") from exc
        except BotoCoreError as exc:
            raise SourceError(f"cannot read the inventory s3://{bucket}/{key}: {exc}") from exc

    def _read_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self._get(self.manifest_bucket, self.manifest_key))
            fmt = manifest["fileFormat"]
            files = manifest["files"]
            manifest["sourceBucket"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{self.uri} is not an S3 Inventory manifest: {exc}") from None
        if fmt not in FORMATS:
            raise SourceError(f"{self.uri}: inventory format {fmt} is not supported (CSV, Parquet)")
        if not isinstance(files, list):
            raise SourceError(f"{self.uri}: the manifest's files is not a list")
        return dict(manifest)

    def check_readable(self) -> None:
        self.manifest  # noqa: B018 - reading it is the check

    # -- listing ----------------------------------------------------------------------------
    def _rows(self, index: int) -> Iterator[dict[str, Any]]:
        """The rows of the manifest's `index`-th data file, as dicts of its columns."""
        entry = self.manifest["files"][index]
        bucket = self.manifest.get("destinationBucket", "").removeprefix("arn:aws:s3:::")
        data = self._get(bucket or self.manifest_bucket, entry["key"])
        if self.manifest["fileFormat"] == "CSV":
            names = [n.strip() for n in str(self.manifest.get("fileSchema", "")).split(",")]
            text = io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(data)), encoding="utf-8")
            for row in csv.reader(text):
                record = dict(zip(names, row, strict=False))
                if "Key" in record:
                    record["Key"] = unquote_plus(record["Key"])  # CSV keys are URL-encoded
                yield record
            return
        import pyarrow.parquet as pq

        with tempfile.TemporaryFile() as fh:
            fh.write(data)
            fh.seek(0)
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=PAGE_SIZE):
                yield from batch.to_pylist()

    @staticmethod
    def _entry(record: dict[str, Any]) -> ScanEntry | None:
        def field(*names: str) -> Any:
            return next((record[n] for n in names if record.get(n) not in (None, "")), None)

        if str(field("IsDeleteMarker", "is_delete_marker")).lower() == "true":
            return None
        latest = field("IsLatest", "is_latest")
        if latest is not None and str(latest).lower() != "true":
            return None
        key = field("Key", "key")
        if not key or str(key).endswith("/") or is_hidden(str(key)):
            return None
        size = field("Size", "size")
        etag = field("ETag", "e_tag")
        return ScanEntry(
            str(key),
            int(size) if size is not None else None,
            fingerprint=str(etag).strip('"') if etag else None,
        )

    def scan_pages(
        self, token: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[ScanPage]:
        """Pages of the inventory's rows; the token is "<file index>:<rows of it consumed>"."""
        start_file, skip = 0, 0
        if token:
            try:
                start_file, skip = (int(p) for p in token.split(":", 1))
            except ValueError:
                raise SourceError(f"invalid inventory continuation token {token!r}") from None
        files = len(self.manifest["files"])
        page: list[ScanEntry] = []
        for index in range(start_file, files):
            consumed = 0
            for record in self._rows(index):
                consumed += 1
                if index == start_file and consumed <= skip:
                    continue
                entry = self._entry(record)
                if entry is not None:
                    page.append(entry)
                if len(page) >= page_size:
                    yield ScanPage(page, next_token=f"{index}:{consumed}")
                    page = []
        yield ScanPage(page, next_token=None)
