"""Progress: a Rich bar with counts, rate and ETA on a terminal; plain log lines otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import base_env, run_cli

pytestmark = pytest.mark.e2e


def _folder(tmp_path: Path, n: int = 30) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i}.txt").write_text(f"text {i}")
    return folder


def test_a_terminal_gets_a_progress_bar_with_rate_and_eta(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    master, slave = os.openpty()
    env = base_env(tmp_path / "home", SPOTBOT_TEST_DELAY="0.05", COLUMNS="160", TERM="xterm")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spotbot",
            "tag",
            str(folder),
            "--bot",
            "tests.fakebots:WordsBot",
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "1",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    stdout, _ = proc.communicate(timeout=60)
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "━" in screen and "ETA" in screen and "/s" in screen
    assert "30/30" in screen and "done 30" in screen
    assert stdout.strip().startswith("{")  # the bar never touches stdout


def test_without_a_terminal_progress_is_plain_lines(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 5)
    proc = run_cli(
        "tag",
        str(folder),
        "--bot",
        "tests.fakebots:WordsBot",
        "--out",
        str(tmp_path / "out"),
        env=base_env(tmp_path / "home"),
    )
    assert proc.returncode == 0
    assert "\x1b[" not in proc.stderr and "━" not in proc.stderr
    assert "scanned 5 objects" in proc.stderr
    assert "SUCCEEDED - done 5, failed 0, skipped 0" in proc.stderr
