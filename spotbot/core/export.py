"""A job's results as a table: one row per asset and tag, for Athena, pandas or a spreadsheet.

An asset with no tag (FAILED, SKIPPED, nothing found) is one row with an empty tag, so every
asset of the job appears. Bot-specific fields stay in `extra` as JSON.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spotbot.core.errors import UsageError
from spotbot.core.records import Result

COLUMNS = (
    "job_id",
    "key",
    "status",
    "bot",
    "model_version",
    "tag_rank",
    "label",
    "score",
    "text",
    "error",
    "extra",
)
FORMATS = ("csv", "parquet")


def export_rows(results: Iterable[Result]) -> Iterator[dict[str, Any]]:
    for result in results:
        extra = {k: v for k, v in result.extra.items() if k != "text"}
        base = {
            "job_id": result.job_id,
            "key": result.key,
            "status": str(result.status),
            "bot": result.bot,
            "model_version": result.model_version,
            "text": result.text or None,
            "error": result.error,
            "extra": json.dumps(extra, ensure_ascii=False) if extra else None,
        }
        if not result.tags:
            yield {**base, "tag_rank": None, "label": None, "score": None}
        for rank, tag in enumerate(result.tags):
            score = tag.get("score")
            yield {
                **base,
                "tag_rank": rank,
                "label": str(tag.get("label", "")),
                "score": float(score) if isinstance(score, int | float) else None,
            }


def write_table(rows: Iterable[dict[str, Any]], path: Path, fmt: str) -> int:
    """Write the rows as CSV or Parquet (streamed in batches); the number of rows written."""
    if fmt == "csv":
        return _write_csv(rows, path)
    if fmt == "parquet":
        return _write_parquet(rows, path)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def _write_csv(rows: Iterable[dict[str, Any]], path: Path) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _write_parquet(rows: Iterable[dict[str, Any]], path: Path, batch: int = 10_000) -> int:
    # pyarrow is imported here: only an export to Parquet pays for it.
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("Parquet export needs pyarrow: pip install 'spotbot[export]'") from None

    schema = pa.schema(
        [
            ("job_id", pa.string()),
            ("key", pa.string()),
            ("status", pa.string()),
            ("bot", pa.string()),
            ("model_version", pa.string()),
            ("tag_rank", pa.int32()),
            ("label", pa.string()),
            ("score", pa.float64()),
            ("text", pa.string()),
            ("error", pa.string()),
            ("extra", pa.string()),
        ]
    )
    count = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        chunk: list[dict[str, Any]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                count, chunk = count + len(chunk), []
        if chunk or count == 0:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            count += len(chunk)
    return count
