"""The images' entry point: dispatch of serve / work / train, and the SageMaker training contract."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from spotbot.entry import container
from tests.conftest import REPO, base_env

WORDS = "tests.fakebots:WordsBot"


@pytest.mark.parametrize("argv", [[], ["bogus"], ["--help"]])
def test_unknown_command_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert container.main(argv) == 2
    usage = "usage: python -m spotbot.entry.container {serve|work|train|warm}"
    assert usage in capsys.readouterr().err


def test_warm_loads_the_image_bot_once_and_needs_to_know_which(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no bot named WHEN an image build runs warm THEN it says what is missing
    monkeypatch.delenv("SPOTBOT_BOT", raising=False)
    assert container.main(["warm"]) == 2
    assert "set SPOTBOT_BOT" in capsys.readouterr().err
    # GIVEN the image's bot WHEN warm runs THEN the bot loads with its built-in model
    monkeypatch.setenv("SPOTBOT_BOT", WORDS)
    assert container.main(["warm"]) == 0
    assert "warm: tests.fakebots:WordsBot loaded" in capsys.readouterr().err


def test_opt_ml_can_be_moved() -> None:
    assert container.opt_ml({}) == Path("/opt/ml")
    assert container.opt_ml({"SPOTBOT_OPT_ML": "/tmp/x"}) == Path("/tmp/x")


# -- train --------------------------------------------------------------------------------
@pytest.fixture
def opt_ml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "opt-ml"
    monkeypatch.setenv("SPOTBOT_OPT_ML", str(base))
    monkeypatch.setenv("SPOTBOT_BOT", WORDS)
    return base


def _training_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """A package holding words.py (the words bot's training module), importable and chosen."""
    name = f"faketraining_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "words.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPOTBOT_TRAINING_PACKAGE", name)
    return name


def _failure(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def test_train_without_training_code_fails_with_a_reason(opt_ml: Path) -> None:
    # GIVEN a bot with no training module WHEN the container trains THEN exit 1 and the reason
    assert container.main(["train"]) == 1
    assert "bot 'tests.fakebots:WordsBot' has no training code yet" in _failure(opt_ml)
    assert "training.words" in _failure(opt_ml)


def test_train_runs_the_bots_main_with_the_arguments(
    opt_ml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _training_package(
        tmp_path,
        monkeypatch,
        "import os, pathlib\n"
        "def main(argv):\n"
        "    out = pathlib.Path(os.environ['SPOTBOT_OPT_ML']) / 'model'\n"
        "    out.mkdir(parents=True)\n"
        "    (out / 'args.txt').write_text(' '.join(argv))\n"
        "    return 0\n",
    )
    assert container.main(["train", "--epochs", "2"]) == 0
    assert (opt_ml / "model" / "args.txt").read_text() == "--epochs 2"
    assert not (opt_ml / "output" / "failure").exists()


def test_train_runs_a_python_m_module(
    opt_ml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _training_package(
        tmp_path,
        monkeypatch,
        "import os, pathlib, sys\n"
        'if __name__ == "__main__":\n'
        "    out = pathlib.Path(os.environ['SPOTBOT_OPT_ML']) / 'model'\n"
        "    out.mkdir(parents=True)\n"
        "    (out / 'argv.txt').write_text(' '.join(sys.argv[1:]))\n",
    )
    assert container.main(["train", "x"]) == 0
    assert (opt_ml / "model" / "argv.txt").read_text() == "x"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "def main(argv):\n    raise ValueError('no images in channel train')\n",
            "failed: ValueError: no images in channel train",
        ),
        ("def main(argv):\n    return 3\n", "exited with code 3"),
        (
            "import sys\ndef main(argv):\n    sys.exit('bad hyperparameters')\n",
            "exited with bad hyperparameters",
        ),
        ("X = 1\n", "has no training entry point yet"),
    ],
)
def test_train_failures_are_written_for_sagemaker(
    opt_ml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, reason: str
) -> None:
    _training_package(tmp_path, monkeypatch, source)
    assert container.main(["train"]) != 0
    assert reason in _failure(opt_ml)


# -- the entry point as a process --------------------------------------------------------
@pytest.mark.integration
def test_work_without_a_job_exits_as_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spotbot.entry.container", "work"],
        env=base_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "SPOTBOT_JOB_ID" in proc.stderr


@pytest.mark.integration
def test_train_process_writes_failure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spotbot.entry.container", "train"],
        env=base_env(SPOTBOT_OPT_ML=str(tmp_path), SPOTBOT_BOT=WORDS),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "no training code yet" in (tmp_path / "output" / "failure").read_text()


@pytest.mark.integration
def test_serve_through_the_entry_point(tmp_path: Path) -> None:
    from tests.entry.test_serving import serve_process

    with serve_process(tmp_path, env={"SPOTBOT_BOT": WORDS}, module="spotbot.entry.container") as (
        proc,
        url,
        _,
    ):
        r = httpx.post(
            f"{url}/invocations", content=b"a b b", headers={"content-type": "text/plain"}
        )
        assert r.json()["tags"][0]["label"] == "b"
        proc.terminate()
        assert proc.wait(timeout=30) == 0
