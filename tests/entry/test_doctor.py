"""A damaged task store is named, never hidden; `spotbot doctor` checks a home and salvages."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import base_env, run_cli

pytestmark = pytest.mark.integration
BOT = "tests.fakebots:WordsBot"


@pytest.fixture
def home_with_a_job(tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """A home whose store holds one finished job of 400 assets, checkpointed into the file."""
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(400):
        (folder / f"t{i:03d}.txt").write_text(f"word number {i} " * 20)
    home = tmp_path / "home"
    env = base_env(home)
    done = run_cli(
        "tag", str(folder), "--bot", BOT, "--out", str(tmp_path / "out"), "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    store = home / "spotbot.sqlite3"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return home, json.loads(done.stdout)["job_id"], env


def _damage_pages(store: Path) -> None:
    """Overwrite two pages in the middle of the file (the header and the jobs stay)."""
    with sqlite3.connect(store) as db:
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        (pages,) = db.execute("PRAGMA page_count").fetchone()
    with open(store, "r+b") as fh:
        fh.seek(page_size * (pages // 2))
        fh.write(b"\xa5" * page_size * 2)


def test_a_damaged_store_is_one_line_on_every_command(
    home_with_a_job: tuple[Path, str, dict[str, str]],
) -> None:
    home, job_id, env = home_with_a_job
    _damage_pages(home / "spotbot.sqlite3")
    for args in (["status", job_id], ["jobs"], ["resume", job_id]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 1, (args, proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert "spotbot.sqlite3 is damaged" in line and "spotbot doctor" in line, line
        assert "Traceback" not in proc.stderr


def test_doctor_names_the_damage_and_salvages_what_can_be_read(
    home_with_a_job: tuple[Path, str, dict[str, str]],
) -> None:
    home, job_id, env = home_with_a_job
    _damage_pages(home / "spotbot.sqlite3")
    # WHEN doctor checks the home THEN it names the damage and the way out
    checked = run_cli("doctor", env=env)
    assert checked.returncode == 1
    assert "problem: the task store" in checked.stdout and "--salvage" in checked.stdout
    # WHEN it salvages THEN the readable jobs and tasks are in a new store, the old kept aside
    salvaged = run_cli("doctor", "--salvage", env=env)
    assert "fixed: salvaged 1 jobs and" in salvaged.stdout, salvaged.stdout + salvaged.stderr
    assert list(home.glob("spotbot.sqlite3.damaged-*"))
    listed = run_cli("jobs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout
    assert run_cli("doctor", env=env).returncode == 0


def test_an_emptied_store_is_a_warning_not_a_silent_fresh_start(
    home_with_a_job: tuple[Path, str, dict[str, str]],
) -> None:
    home, _, env = home_with_a_job
    (home / "spotbot.sqlite3").write_bytes(b"")
    # WHEN doctor looks first THEN it says the jobs are gone, and where their results still are
    checked = run_cli("doctor", env=env)
    assert checked.returncode == 1 and "is empty (0 bytes)" in checked.stdout
    assert "still in each job's output folder" in checked.stdout
    # WHEN a command opens it THEN it warns before a new store starts there
    proc = run_cli("jobs", env=env)
    assert proc.returncode == 0
    assert "is empty (0 bytes): the jobs it held are gone" in proc.stderr
