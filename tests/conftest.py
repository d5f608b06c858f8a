"""Shared fixtures: a spotbot home, the CLI as a real process, a moto S3 server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# A script that loads the built-in sentiment-zh model in a fresh process (the way a worker does)
# and prints what follows it, e.g. SENTIMENT_LOAD + "print('torch' in sys.modules)\n".
SENTIMENT_LOAD = (
    "import sys\n"
    "from spotbot.bots.sentiment_zh import SentimentZhBot\n"
    "from spotbot.core.artifacts import ModelRef\n"
    "bot = SentimentZhBot()\n"
    "bot.load(ModelRef(bot.name, bot.builtin_version, None, 'built-in'), threads=1)\n"
)


def base_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTBOT_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    if home is not None:
        env["SPOTBOT_HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spotbot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server process-wide on loopback: spawned workers reach it through the env."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Env (also set in this process) pointing boto3 at the moto server with fake credentials."""
    values = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    return values


@pytest.fixture(scope="session")
def cjk_lines() -> list[tuple[str, object]]:
    from spotbot.bots.synth import make_line_set

    return make_line_set(48, seed=7)
