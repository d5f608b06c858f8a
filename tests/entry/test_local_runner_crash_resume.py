"""A run killed at any moment (kill -9, Ctrl-C) resumes: no result lost, none written twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import base_env, run_cli

pytestmark = pytest.mark.e2e

N_ASSETS = 60
BOT = "tests.fakebots:WordsBot"


def _assets(folder: Path) -> Path:
    folder.mkdir()
    for i in range(N_ASSETS):
        (folder / f"a{i:03d}.txt").write_text(f"asset {i} words words")
    (folder / "broken.txt").write_bytes(b"\xff\xfe\x00 not utf-8 \xff")
    return folder


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spotbot", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _done_count(db: Path) -> int:
    if not db.exists():
        return -1
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            row = con.execute("SELECT count(*) FROM tasks WHERE status = 'DONE'").fetchone()
            return int(row[0])
    except sqlite3.OperationalError:
        return -1  # tables not created yet


def _job_exists(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return bool(con.execute("SELECT count(*) FROM jobs").fetchone()[0])
    except sqlite3.OperationalError:
        return False


def _wait_for(db: Path, at_least: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _done_count(db) < at_least:
        assert proc.poll() is None, f"run ended before the kill point: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)


def _job_id(env: dict[str, str]) -> str:
    jobs = json.loads(run_cli("jobs", "--json", env=env).stdout)
    assert len(jobs) == 1
    return str(jobs[0]["id"])


def _check_complete(out: Path, home: Path, job_id: str, per_asset: bool = False) -> None:
    lines = (out / job_id / "results.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == N_ASSETS + 1, "lost or duplicated results"
    statuses = {r["key"]: r["status"] for r in records}
    assert statuses.pop("broken.txt") == "FAILED"
    assert set(statuses.values()) == {"DONE"}
    if per_asset:
        names = sorted(p.name for p in (out / job_id / "results").iterdir())
        assert names == [f"a{i:03d}.txt.json" for i in range(N_ASSETS)]  # no temp files left
    else:  # results.jsonl only, unless per-asset results were asked for
        assert not (out / job_id / "results").exists()
    with sqlite3.connect(home / "spotbot.sqlite3") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        running = con.execute("SELECT count(*) FROM tasks WHERE status IN ('RUNNING', 'PENDING')")
        assert running.fetchone()[0] == 0


@pytest.mark.parametrize(
    "kill_after_done, whole_group",
    [
        (0, True),  # killed while scanning / before any result
        (5, True),  # early, with the workers (a machine that dies)
        (30, False),  # mid-way, only the runner: its workers must die with it
        (N_ASSETS, True),  # every asset tagged, before or during finalize
    ],
)
def test_kill_9_then_resume_finishes_with_exactly_one_result_per_asset(
    tmp_path: Path, kill_after_done: int, whole_group: bool
) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    env = base_env(home, SPOTBOT_TEST_DELAY="0.03")
    folder = _assets(tmp_path / "in")
    args = ["tag", str(folder), "--bot", BOT, "--out", str(out), "--workers", "2"]
    proc = _start([*args, "--per-asset-results"], env)
    if kill_after_done:
        _wait_for(home / "spotbot.sqlite3", kill_after_done, proc)
    else:
        deadline = time.monotonic() + 30
        while not _job_exists(home / "spotbot.sqlite3") and time.monotonic() < deadline:
            time.sleep(0.01)
    if whole_group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.3)  # orphaned workers get SIGKILL from the kernel (PR_SET_PDEATHSIG)

    job_id = _job_id(env)
    resumed = run_cli("resume", job_id, "--workers", "2", env=env)

    assert resumed.returncode == 0, resumed.stderr
    _check_complete(out, home, job_id, per_asset=True)


def test_killed_again_and_again_it_still_converges(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    env = base_env(home, SPOTBOT_TEST_DELAY="0.03")
    folder = _assets(tmp_path / "in")
    proc = _start(["tag", str(folder), "--bot", BOT, "--out", str(out), "--workers", "2"], env)
    _wait_for(home / "spotbot.sqlite3", 8, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    job_id = _job_id(env)
    for target in (20, 40):
        proc = _start(["resume", job_id, "--workers", "2"], env)
        _wait_for(home / "spotbot.sqlite3", target, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = run_cli("resume", job_id, env=env)
    assert final.returncode == 0, final.stderr
    _check_complete(out, home, job_id)


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    env = base_env(home, SPOTBOT_TEST_DELAY="0.05")
    folder = _assets(tmp_path / "in")
    proc = _start(["tag", str(folder), "--bot", BOT, "--out", str(out), "--workers", "2"], env)
    _wait_for(home / "spotbot.sqlite3", 6, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the foreground group
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stderr
    assert "resume with `spotbot resume" in stderr and "Traceback" not in stderr
    job_id = _job_id(env)
    status = json.loads(run_cli("status", job_id, "--json", env=env).stdout)
    assert status["status"] == "INTERRUPTED"
    assert status["counts"]["running"] == 0  # claimed-but-untouched tasks were handed back
    assert run_cli("resume", job_id, env=env).returncode == 0
    _check_complete(out, home, job_id)


@pytest.mark.parametrize(
    ("signum", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["term", "ctrl-c"]
)
def test_a_stop_during_model_loading_acts_within_two_seconds(
    tmp_path: Path, signum: int, group: bool
) -> None:
    # GIVEN a run whose workers are loading a model that takes a minute to load
    home, out = tmp_path / "home", tmp_path / "out"
    env = base_env(home, SPOTBOT_TEST_LOAD_DELAY="60")
    folder = _assets(tmp_path / "in")
    proc = _start(["tag", str(folder), "--bot", BOT, "--out", str(out), "--workers", "2"], env)
    deadline = time.monotonic() + 60
    while _job_tasks(home / "spotbot.sqlite3") < N_ASSETS:  # scanned: the workers are loading
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    # WHEN it is told to stop (SIGTERM to the process, or Ctrl-C to the terminal's group)
    began = time.monotonic()
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    # THEN it is gone within 2 s, interrupted (exit 130), no process left behind
    assert time.monotonic() - began < 2.0, stderr
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    leftover = subprocess.run(
        ["ps", "-o", "pid,stat,args", "-g", str(proc.pid)], capture_output=True, text=True
    )
    assert leftover.stdout.splitlines()[1:] == [], leftover.stdout  # not even a zombie
    # AND resume (with a quick load) finishes the job
    job_id = _job_id(env)
    assert run_cli("resume", job_id, env=base_env(home)).returncode == 0
    _check_complete(out, home, job_id)


def _job_tasks(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_a_job_cannot_be_run_twice_at_once(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    env = base_env(home, SPOTBOT_TEST_DELAY="0.05")
    folder = _assets(tmp_path / "in")
    proc = _start(["tag", str(folder), "--bot", BOT, "--out", str(out), "--workers", "1"], env)
    _wait_for(home / "spotbot.sqlite3", 2, proc)
    second = run_cli("resume", _job_id(env), env=env)
    assert second.returncode == 2
    assert "is already running" in second.stderr
    proc.communicate(timeout=120)
    assert proc.returncode == 0


def test_a_job_that_failed_for_its_environment_is_resumed_deliberately(tmp_path: Path) -> None:
    # GIVEN a job that FAILED because its model would not load on this machine
    home, out = tmp_path / "home", tmp_path / "out"
    folder = _assets(tmp_path / "in")
    broken = base_env(home, SPOTBOT_TEST_LOAD_FAIL="the weights file is unreadable")
    failed = run_cli("tag", str(folder), "--bot", BOT, "--out", str(out), env=broken)
    assert failed.returncode == 1 and "the weights file is unreadable" in failed.stderr
    job_id = _job_id(broken)
    status = json.loads(run_cli("status", job_id, "--json", env=broken).stdout)
    assert status["status"] == "FAILED"
    # WHEN the cause is fixed and the job resumed THEN it finishes, every asset tagged once
    resumed = run_cli("resume", job_id, env=base_env(home))
    assert resumed.returncode == 0, resumed.stderr
    _check_complete(out, home, job_id)


def test_a_finished_run_leaves_no_process_behind(tmp_path: Path) -> None:
    # GIVEN a run on two workers (spawned pool processes, and multiprocessing's helper)
    home, out = tmp_path / "home", tmp_path / "out"
    folder = _assets(tmp_path / "in")
    proc = _start(
        ["tag", str(folder), "--bot", BOT, "--out", str(out), "--workers", "2"], base_env(home)
    )
    proc.communicate(timeout=120)
    # WHEN it has exited THEN nothing of it is left in its process group, not even a zombie
    assert proc.returncode == 0
    leftover = subprocess.run(
        ["ps", "-o", "pid,stat,args", "-g", str(proc.pid)], capture_output=True, text=True
    )
    assert leftover.stdout.splitlines()[1:] == [], leftover.stdout
