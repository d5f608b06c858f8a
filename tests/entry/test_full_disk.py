"""A full disk interrupts a job resumably: once space is freed, `resume` finishes it and
nothing tagged is lost or written twice. The disk is a real, small tmpfs under --out, in a
mount namespace of the test's own (`unshare`), enlarged between the two runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import base_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
BOT = "tests.fakebots:WordsBot"
N = 300

SCRIPT = """
set -u
mount -t tmpfs -o size=96k tmpfs "$OUT"
"$PY" -m spotbot tag "$SRC" --bot "$BOT" --out "$OUT" --workers 2 --per-asset-results >"$WORK/first.out" 2>"$WORK/first.err"
echo $? >"$WORK/first.rc"
"$PY" -m spotbot jobs --json >"$WORK/jobs.json"
mount -o remount,size=64m tmpfs "$OUT"
JOB=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["id"])' "$WORK/jobs.json")
"$PY" -m spotbot resume "$JOB" --json >"$WORK/second.out" 2>"$WORK/second.err"
echo $? >"$WORK/second.rc"
cp -r "$OUT/$JOB" "$WORK/kept"
"""


def test_a_full_disk_interrupts_and_resume_finishes_with_nothing_lost(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(N):
        (src / f"t{i:03d}.txt").write_text(f"asset {i} word word")
    out = tmp_path / "out"
    out.mkdir()
    env = base_env(
        tmp_path / "home",
        PY=sys.executable,
        SRC=str(src),
        OUT=str(out),
        BOT=BOT,
        WORK=str(tmp_path),
    )
    # GIVEN an output on a filesystem too small for the job's results
    # WHEN the job runs, then space is freed and the job is resumed
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    first_err = (tmp_path / "first.err").read_text()
    # THEN the first run stops with exit 75 and one line naming the path and the way out
    assert (tmp_path / "first.rc").read_text().strip() == "75", first_err
    (line,) = [x for x in first_err.splitlines() if x.startswith("error:")]
    assert "No space left on device" in line and str(out) in line, line
    assert "spotbot resume" in line and "Traceback" not in first_err
    # AND the resume after the space is freed finishes it
    assert (tmp_path / "second.rc").read_text().strip() == "0", (
        tmp_path / "second.err"
    ).read_text()
    summary = json.loads((tmp_path / "second.out").read_text())
    assert summary["status"] == "SUCCEEDED" and summary["counts"]["done"] == N
    # AND every asset has exactly one result, none lost and none twice
    lines = [json.loads(x) for x in (tmp_path / "kept" / "results.jsonl").read_text().splitlines()]
    assert sorted(x["key"] for x in lines) == sorted(p.name for p in src.iterdir())
    assert all(x["status"] == "DONE" for x in lines)
    assert len(list((tmp_path / "kept" / "results").iterdir())) == N
