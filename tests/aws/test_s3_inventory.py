"""An S3 Inventory manifest as a source, under moto: CSV and Parquet reports, pages, resume."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

moto = pytest.importorskip("moto")

from spotbot.aws.locations import open_source  # noqa: E402
from spotbot.aws.s3_inventory import S3InventorySource  # noqa: E402
from spotbot.core.errors import SourceError  # noqa: E402

SOURCE, REPORTS = "photo-archive", "inventory-reports"
MANIFEST = "photo-archive/daily/2026-12-01T00-00Z/manifest.json"
OBJECTS = {
    "2024/a.jpg": b"aaaa",
    "2024/b c.jpg": b"bb",  # a space: URL-encoded as "+" in a CSV inventory
    "2024/sub/é.jpg": b"ccc",
    ".hidden/x.jpg": b"x",
    "folder/": b"",
}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (SOURCE, REPORTS):
            client.create_bucket(Bucket=bucket)
        for key, body in OBJECTS.items():
            client.put_object(Bucket=SOURCE, Key=key, Body=body)
        yield client


def _rows(s3: Any) -> list[dict[str, Any]]:
    rows = []
    for key in OBJECTS:
        head = s3.head_object(Bucket=SOURCE, Key=key)
        rows.append(
            {"Bucket": SOURCE, "Key": key, "Size": head["ContentLength"], "ETag": head["ETag"]}
        )
    # an old version and a delete marker: not assets
    rows.append(
        {"Bucket": SOURCE, "Key": "2024/old.jpg", "Size": 1, "ETag": "e", "IsLatest": "false"}
    )
    rows.append(
        {"Bucket": SOURCE, "Key": "2024/gone.jpg", "Size": 0, "ETag": "", "IsDeleteMarker": "true"}
    )
    return rows


SCHEMA = ["Bucket", "Key", "Size", "ETag", "IsLatest", "IsDeleteMarker"]


def _csv_report(s3: Any, rows: list[dict[str, Any]], files: int = 1) -> str:
    from urllib.parse import quote_plus

    entries = []
    for i in range(files):
        text = io.StringIO()
        writer = csv.writer(text)
        for row in rows[i::files]:
            values = {**row, "Key": quote_plus(row["Key"], safe="/")}
            writer.writerow([values.get(c, "") for c in SCHEMA])
        key = f"photo-archive/daily/data/part-{i}.csv.gz"
        s3.put_object(Bucket=REPORTS, Key=key, Body=gzip.compress(text.getvalue().encode()))
        entries.append({"key": key, "size": 1, "MD5checksum": "x"})
    manifest = {
        "sourceBucket": SOURCE,
        "destinationBucket": f"arn:aws:s3:::{REPORTS}",
        "fileFormat": "CSV",
        "fileSchema": ", ".join(SCHEMA),
        "files": entries,
    }
    s3.put_object(Bucket=REPORTS, Key=MANIFEST, Body=json.dumps(manifest).encode())
    return f"s3://{REPORTS}/{MANIFEST}"


def _parquet_report(s3: Any, rows: list[dict[str, Any]]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = {"Bucket": "bucket", "Key": "key", "Size": "size", "ETag": "e_tag"}
    table = pa.Table.from_pylist(
        [
            {
                **{names[k]: v for k, v in row.items() if k in names},
                "is_latest": row.get("IsLatest", "true") == "true",
                "is_delete_marker": row.get("IsDeleteMarker", "false") == "true",
            }
            for row in rows
        ]
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = "photo-archive/daily/data/part-0.parquet"
    s3.put_object(Bucket=REPORTS, Key=key, Body=buf.getvalue())
    manifest = {
        "sourceBucket": SOURCE,
        "destinationBucket": f"arn:aws:s3:::{REPORTS}",
        "fileFormat": "Parquet",
        "fileSchema": "message s3.inventory { ... }",
        "files": [{"key": key, "size": 1, "MD5checksum": "x"}],
    }
    s3.put_object(Bucket=REPORTS, Key=MANIFEST, Body=json.dumps(manifest).encode())
    return f"s3://{REPORTS}/{MANIFEST}"


def _listed(source: S3InventorySource, page_size: int = 1000) -> dict[str, Any]:
    return {
        e.key: (e.size, e.fingerprint)
        for page in source.scan_pages(page_size=page_size)
        for e in page.entries
    }


EXPECTED_KEYS = {"2024/a.jpg", "2024/b c.jpg", "2024/sub/é.jpg"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_inventory_lists_current_objects_with_size_and_etag(s3: Any, fmt: str) -> None:
    # GIVEN an inventory report of the bucket (with hidden, folder, old and deleted rows)
    uri = (_csv_report if fmt == "csv" else _parquet_report)(s3, _rows(s3))
    # WHEN it is opened as a source
    source = open_source(uri, client=s3)
    assert isinstance(source, S3InventorySource)
    listed = _listed(source)
    # THEN exactly the current, visible objects, with the sizes and ETags S3 gives them
    assert set(listed) == EXPECTED_KEYS
    etag = s3.head_object(Bucket=SOURCE, Key="2024/a.jpg")["ETag"].strip('"')
    assert listed["2024/a.jpg"] == (4, etag)
    # AND an asset is read from the inventoried bucket, not the report's
    assert source.read("2024/b c.jpg", 100) == b"bb"


def test_inventory_pages_resume_from_their_token_across_files(s3: Any) -> None:
    uri = _csv_report(s3, _rows(s3), files=3)
    source = S3InventorySource(uri, client=s3)
    pages = list(source.scan_pages(page_size=1))
    assert [len(p.entries) for p in pages[:-1]] == [1, 1, 1]
    assert pages[-1].next_token is None
    # resuming after the first page gives the rest, nothing twice
    first = pages[0]
    rest = [e.key for p in source.scan_pages(first.next_token, page_size=1) for e in p.entries]
    assert sorted([first.entries[0].key, *rest]) == sorted(EXPECTED_KEYS)


def test_a_file_that_is_not_a_manifest_is_a_source_error(s3: Any) -> None:
    s3.put_object(Bucket=REPORTS, Key="x/manifest.json", Body=b'{"files": []}')
    source = S3InventorySource(f"s3://{REPORTS}/x/manifest.json", client=s3)
    with pytest.raises(SourceError, match="is not an S3 Inventory manifest"):
        source.check_readable()
    with pytest.raises(SourceError, match="NoSuchKey"):
        S3InventorySource(f"s3://{REPORTS}/none/manifest.json", client=s3).check_readable()
    s3.put_object(
        Bucket=REPORTS,
        Key="orc/manifest.json",
        Body=json.dumps({"sourceBucket": SOURCE, "fileFormat": "ORC", "files": []}).encode(),
    )
    with pytest.raises(SourceError, match="ORC is not supported"):
        S3InventorySource(f"s3://{REPORTS}/orc/manifest.json", client=s3).check_readable()
