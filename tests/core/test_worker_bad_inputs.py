"""Bad assets fail their own task with a clear one-line error; the job completes."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from spotbot.core.sinks import result_relpath
from spotbot.entry.local_runner import LocalRunner

REPO = Path(__file__).resolve().parents[2]


def _png(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), (seed % 255, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    return (REPO / "examples" / "signs" / "sign-06.jpg").read_bytes()


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    root = tmp_path / "assets"
    root.mkdir()
    shutil.copy(REPO / "examples" / "signs" / "sign-01.jpg", root / "good sign 出口.jpg")
    png = bytearray(_png())
    png[40:60] = b"\x00" * 20  # damage the image data: the CRC no longer matches
    (root / "corrupt.png").write_bytes(bytes(png))
    data = _jpeg()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "junk.jpg").write_bytes(bytes(range(256)) * 40)
    (root / "huge.png").write_bytes(_png() + b"\x00" * 3_000_000)  # over a 2 MB cap
    (root / "loop-a.jpg").symlink_to(root / "loop-b.jpg")
    (root / "loop-b.jpg").symlink_to(root / "loop-a.jpg")
    (root / "notes.txt").write_text("not for this bot")
    return root


@pytest.mark.e2e
def test_each_bad_asset_fails_alone_and_the_job_completes(bad_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = LocalRunner(tmp_path / "home", workers=2)
    job = runner.create(
        bot="ocr-zh",
        source=str(bad_folder),
        output=str(out),
        max_asset_bytes=2_000_000,
        per_asset_results=True,
    )
    # a file that vanishes and one that turns into a folder between scan and work
    (bad_folder / "vanishes.jpg").write_bytes(_jpeg())
    (bad_folder / "becomes-dir.jpg").write_bytes(_jpeg())
    from spotbot.aws.locations import open_source
    from spotbot.core.steps import scan_job

    with runner.home.store() as store:
        scan_job(store, job, open_source(job.source))
    (bad_folder / "vanishes.jpg").unlink()
    (bad_folder / "becomes-dir.jpg").unlink()
    (bad_folder / "becomes-dir.jpg").mkdir()

    outcome = runner.run(job.id)

    assert outcome.summary is not None and outcome.summary["status"] == "SUCCEEDED"
    lines = [json.loads(x) for x in (out / job.id / "results.jsonl").read_text().splitlines()]
    by_key = {r["key"]: r for r in lines}
    assert len(lines) == len(by_key)
    assert by_key["good sign 出口.jpg"]["status"] == "DONE"
    assert by_key["good sign 出口.jpg"]["text"] == "免费无线网络"
    expected = {
        "corrupt.png": "corrupt PNG",
        "truncated.jpg": "corrupt JPEG",
        "empty.jpg": "empty file (0 bytes)",
        "junk.jpg": "not an image",
        "huge.png": "asset too large",
        "loop-a.jpg": "symlink loop",
        "loop-b.jpg": "symlink loop",
        "vanishes.jpg": "cannot read: file not found",
        "becomes-dir.jpg": "cannot read: it is a folder",
    }
    for key, message in expected.items():
        record = by_key[key]
        assert record["status"] == "FAILED", key
        assert message in record["error"], (key, record["error"])
        assert "\n" not in record["error"] and "Traceback" not in record["error"]
    assert by_key["notes.txt"]["status"] == "SKIPPED"
    assert outcome.summary["counts"] == {"total": 11, "done": 1, "failed": 9, "skipped": 1}
    # the per-asset result of the good one is where the key says, inside OUT
    assert (out / job.id / "results" / result_relpath("good sign 出口.jpg")).is_file()


@pytest.mark.e2e
def test_failures_over_the_threshold_fail_the_job(bad_folder: Path, tmp_path: Path) -> None:
    runner = LocalRunner(tmp_path / "home", workers=1)
    job = runner.create(
        bot="ocr-zh",
        source=str(bad_folder),
        output=str(tmp_path / "out"),
        max_failure_pct=50,
        max_asset_bytes=2_000_000,
    )
    outcome = runner.run(job.id)
    assert outcome.job.status == "FAILED"
    assert outcome.summary and "over the 50% allowed" in outcome.summary["error"]


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "a/../../b.jpg",
        "..",
        ".",
        "a//b.jpg",
        "中文 目录/照片 1.jpg",
        "/abs/x.jpg",
        "%2E%2E/x",
        "a/./b",
    ],
)
def test_result_paths_never_leave_the_results_folder(key: str, tmp_path: Path) -> None:
    from spotbot.core.records import Result, TaskStatus
    from spotbot.core.sinks import LocalSink

    sink = LocalSink(tmp_path / "out")
    sink.write_result(Result("job-1", key, "b", "v1", TaskStatus.DONE))
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(written) == 1
    assert (tmp_path / "out" / "job-1" / "results") in written[0].parents
    relpath = result_relpath(key)
    assert ".." not in relpath.split("/") and "" not in relpath.split("/")[:-1]


def test_distinct_keys_never_share_a_result_path() -> None:
    keys = ["a/b.jpg", "a%2Fb.jpg", "a/./b.jpg", "a/%2E/b.jpg", "a b.jpg", "a+b.jpg", ".."]
    paths = {result_relpath(k) for k in keys}
    assert len(paths) == len(keys)
