"""A damaged write-ahead log is named, not silently replayed up to the damage (a job that
"rolls back" without a word), while a log torn at its end after a crash still opens."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from spotbot.core.errors import StoreError
from spotbot.core.records import Job, Result, Task, TaskStatus
from spotbot.core.sqlite_store import SqliteTaskStore
from spotbot.core.wal_check import check_wal
from tests.conftest import base_env, run_cli

JOB = "job-wal"
BATCHES = 6


def _crashed_store(tmp_path: Path) -> Path:
    """A store as a crash leaves it: six committed batches of 50 DONE tasks still in the WAL
    (the files are copied while the writer has them open, so nothing was checkpointed)."""
    live = tmp_path / "live" / "spotbot.sqlite3"
    store = SqliteTaskStore(live)
    store.create_job(Job(id=JOB, bot="words", source="s", output="o"))
    for batch in range(BATCHES):
        keys = [f"b{batch}-{i:02d}" for i in range(50)]
        store.put_tasks([Task(job_id=JOB, key=k) for k in keys])
        claimed = store.claim_tasks(JOB, 0, "w", 50)
        store.complete_tasks(
            [Result(JOB, t.key, "words", "1", TaskStatus.DONE, tags=[]) for t in claimed]
        )
    crashed = tmp_path / "home" / "spotbot.sqlite3"
    crashed.parent.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{live}{suffix}", f"{crashed}{suffix}")
    store.close()
    return crashed


def _frames(store: Path) -> tuple[int, int]:
    wal = Path(f"{store}-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    return (len(wal) - 32) // (24 + page_size), page_size


def _damage_frame(store: Path, frame: int) -> None:
    _, page_size = _frames(store)
    with open(f"{store}-wal", "r+b") as fh:
        fh.seek(32 + (frame - 1) * (24 + page_size) + 24 + page_size // 2)
        fh.write(b"\xa5" * 64)


def _done_as_sqlite_sees_it(store: Path, tmp_path: Path) -> int:
    copy = tmp_path / "plain" / "copy.sqlite3"
    copy.parent.mkdir(exist_ok=True)
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{store}{suffix}", f"{copy}{suffix}")
    with sqlite3.connect(copy) as db:
        return db.execute("SELECT count(*) FROM tasks WHERE status = 'DONE'").fetchone()[0]


def test_a_sound_log_opens_with_every_commit(tmp_path: Path) -> None:
    store_path = _crashed_store(tmp_path)
    assert check_wal(store_path) is None
    store = SqliteTaskStore(store_path)
    assert store.count_tasks(JOB)[TaskStatus.DONE] == 50 * BATCHES


def test_a_damaged_log_refuses_to_open_instead_of_dropping_commits(tmp_path: Path) -> None:
    store_path = _crashed_store(tmp_path)
    frames, _ = _frames(store_path)
    _damage_frame(store_path, frames // 2)
    # what SQLite alone would do: open quietly with the later batches gone
    assert _done_as_sqlite_sees_it(store_path, tmp_path) < 50 * BATCHES
    damage = check_wal(store_path)
    assert damage is not None and damage.frame == frames // 2 and damage.lost_commits >= 1
    with pytest.raises(StoreError, match=r"damaged write-ahead log spotbot\.sqlite3-wal"):
        SqliteTaskStore(store_path)
    # the files are untouched: whoever copies them aside still has every frame
    assert _frames(store_path)[0] == frames


def test_a_log_torn_at_its_end_still_opens(tmp_path: Path) -> None:
    store_path = _crashed_store(tmp_path)
    frames, _ = _frames(store_path)
    _damage_frame(store_path, frames)  # the last commit's frame: it never committed
    assert check_wal(store_path) is None
    store = SqliteTaskStore(store_path)
    assert store.count_tasks(JOB)[TaskStatus.DONE] == 50 * (BATCHES - 1)


@pytest.mark.integration
def test_every_command_says_so_in_one_line_and_doctor_salvages(tmp_path: Path) -> None:
    store_path = _crashed_store(tmp_path)
    frames, _ = _frames(store_path)
    _damage_frame(store_path, frames // 2)
    env = base_env(store_path.parent)
    for args in (["status", JOB], ["jobs"], ["resume", JOB]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 1, (args, proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert "damaged write-ahead log" in line and "spotbot doctor" in line, line
    checked = run_cli("doctor", env=env)
    assert checked.returncode == 1
    assert "problem:" in checked.stdout and "write-ahead log" in checked.stdout
    assert "--salvage" in checked.stdout
    salvaged = run_cli("doctor", "--salvage", env=env)
    assert "fixed: salvaged 1 jobs" in salvaged.stdout, salvaged.stdout + salvaged.stderr
    assert list(store_path.parent.glob("spotbot.sqlite3.damaged-*-wal"))
    status = run_cli("status", JOB, "--json", env=env)
    assert status.returncode == 0, status.stderr
