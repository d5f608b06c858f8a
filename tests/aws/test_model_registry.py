"""The S3 model registry chooses a model by the same rule as the local one (choose_model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from spotbot.aws.model_registry import S3ModelRegistry
from spotbot.core.artifacts import ModelManifest, ModelRegistry
from spotbot.core.errors import UsageError
from tests.fakebots import WordsBot


class NoBuiltinBot(WordsBot):
    builtin_version = None


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="artifacts")
        yield client


def _model(tmp_path: Path, version: str, created: str) -> Path:
    folder = tmp_path / "src" / version
    ModelManifest("words", version, "test", created=created).write(folder)
    (folder / "weights.bin").write_bytes(b"w")
    return folder


def test_both_registries_choose_alike(s3: Any, tmp_path: Path) -> None:
    # GIVEN the same two versions in a local registry and in the S3 registry
    local = ModelRegistry(tmp_path / "models")
    remote = S3ModelRegistry("artifacts", "models/", client=s3)
    for version, created in (("v1", "2026-01-01T00:00:00Z"), ("v2", "2026-02-01T00:00:00Z")):
        folder = _model(tmp_path, version, created)
        local.import_model(folder)
        remote.upload(folder)
    # THEN newest, a pin and the built-in's pin resolve to the same versions in both
    for pin, expected in ((None, "v2"), ("v1", "v1"), ("words-1", "words-1")):
        assert local.resolve(WordsBot, pin).version == expected
        assert remote.resolve(WordsBot, pin).version == expected
    assert remote.resolve(WordsBot).origin == "s3://artifacts/models/words/v2/"
    assert local.resolve(WordsBot).path == local.path("words", "v2")
    with pytest.raises(UsageError, match="v9"):
        remote.resolve(WordsBot, "v9")


def test_an_empty_registry_falls_back_to_the_builtin_or_says_what_to_do(
    s3: Any, tmp_path: Path
) -> None:
    local = ModelRegistry(tmp_path / "models")
    remote = S3ModelRegistry("artifacts", "models/", client=s3)
    assert local.resolve(WordsBot).version == remote.resolve(WordsBot).version == "words-1"
    with pytest.raises(UsageError, match="spotbot models import"):
        local.resolve(NoBuiltinBot)
    with pytest.raises(UsageError, match="no model in s3://artifacts/models/words/"):
        remote.resolve(NoBuiltinBot)
