"""Bot discovery through entry points, and the model registry: newest version wins, pins hold."""

from __future__ import annotations

import json
import tarfile
import textwrap
from pathlib import Path

import pytest

from spotbot.core.artifacts import ModelManifest, ModelRegistry, resolve_model
from spotbot.core.errors import ModelError, UnknownBotError, UsageError
from spotbot.core.plugins import available_bots, load_bot_class
from tests.fakebots import WordsBot


def test_builtin_bots_are_found_through_entry_points() -> None:
    assert available_bots()["ocr-zh"] == "spotbot.bots.ocr_zh:OcrZhBot"
    assert load_bot_class("ocr-zh").name == "ocr-zh"


def test_a_third_party_bot_is_found_without_touching_spotbot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a package installed beside spotbot that declares a bot in the entry-point group
    (tmp_path / "acme_bot.py").write_text(
        textwrap.dedent("""
        from spotbot.core.bot import Bot
        class AcmeBot(Bot):
            name = "acme"
            extensions = frozenset({"csv"})
            builtin_version = "acme-1"
            def _load(self, model, threads): pass
            def decode(self, data, key): return data
            def predict(self, items): return [{"tags": [{"label": "acme", "score": 1.0}]} for _ in items]
    """)
    )
    dist = tmp_path / "acme_bot-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-bot\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[spotbot.bots]\nacme = acme_bot:AcmeBot\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    # THEN spotbot lists and loads it by name
    assert "acme" in available_bots()
    cls = load_bot_class("acme")
    assert cls.accepts("x/report.CSV") and not cls.accepts("x.jpg")


def test_unknown_bots_are_usage_errors() -> None:
    with pytest.raises(UnknownBotError, match=r"unknown bot 'nope'.*ocr-zh"):
        load_bot_class("nope")
    with pytest.raises(UnknownBotError, match="cannot load"):
        load_bot_class("no.such.module:Bot")
    with pytest.raises(UnknownBotError, match="not a spotbot Bot"):
        load_bot_class("json:dumps")
    assert load_bot_class("tests.fakebots:WordsBot") is WordsBot


def _model(folder: Path, bot: str, version: str, created: str, **extra: object) -> Path:
    ModelManifest(
        bot=bot, version=version, framework="test", created=created, extra=dict(extra)
    ).write(folder)
    return folder


def test_registry_picks_the_newest_version_and_honours_a_pin(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert resolve_model(WordsBot, registry).path is None  # built-in when the registry is empty
    registry.import_model(_model(tmp_path / "a", "words", "1.0", "2026-01-01T00:00:00Z"))
    registry.import_model(_model(tmp_path / "b", "words", "2.0", "2026-03-01T00:00:00Z"))
    registry.import_model(_model(tmp_path / "c", "words", "1.5", "2026-02-01T00:00:00Z"))

    assert resolve_model(WordsBot, registry).version == "2.0"
    assert resolve_model(WordsBot, registry, "1.5").version == "1.5"
    assert resolve_model(WordsBot, registry, str(tmp_path / "a")).path == tmp_path / "a"
    assert resolve_model(WordsBot, registry, "words-1").path is None  # the built-in, pinned
    with pytest.raises(UsageError, match="no model version '9'"):
        resolve_model(WordsBot, registry, "9")

    registry.remove("words", "2.0")
    assert resolve_model(WordsBot, registry).version == "1.5"


def test_importing_twice_and_foreign_manifests_are_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    registry.import_model(_model(tmp_path / "a", "words", "1.0", "2026-01-01T00:00:00Z"))
    with pytest.raises(UsageError, match="already in the registry"):
        registry.import_model(tmp_path / "a")
    registry.import_model(tmp_path / "a", replace=True)
    other = _model(tmp_path / "o", "ocr-zh", "9.9", "2026-01-01T00:00:00Z")
    with pytest.raises(ModelError, match="for bot 'ocr-zh', not 'words'"):
        resolve_model(WordsBot, registry, str(other))


def test_model_tarballs_import_like_folders(tmp_path: Path) -> None:
    folder = _model(tmp_path / "m", "words", "3.0", "2026-05-01T00:00:00Z")
    (folder / "weights.bin").write_bytes(b"\x00" * 10)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="model")
    manifest = ModelRegistry(tmp_path / "models").import_model(archive)
    assert manifest.version == "3.0"
    assert (tmp_path / "models" / "words" / "3.0" / "weights.bin").is_file()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "unreadable manifest"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"bot": "words"}), "missing version, framework"),
        (json.dumps({"bot": "words", "version": "../x", "framework": "t"}), "invalid version"),
    ],
)
def test_corrupt_manifests_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bot.json").write_text(content)
    with pytest.raises(ModelError, match=message):
        ModelManifest.read(tmp_path)


def test_a_corrupt_version_in_the_registry_is_never_picked(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    registry.import_model(_model(tmp_path / "a", "words", "1.0", "2026-01-01T00:00:00Z"))
    broken = tmp_path / "models" / "words" / "2.0"
    broken.mkdir()
    (broken / "bot.json").write_text("{half a manif")
    assert [m.version for m in registry.versions("words")] == ["1.0"]


def test_loading_a_model_for_another_bot_fails_at_load(tmp_path: Path) -> None:
    from spotbot.bots.ocr_zh import OcrZhBot
    from spotbot.core.artifacts import ModelRef

    folder = _model(tmp_path / "m", "words", "1.0", "2026-01-01T00:00:00Z")
    with pytest.raises(ModelError, match="for bot 'words', not 'ocr-zh'"):
        OcrZhBot().load(ModelRef("ocr-zh", "1.0", folder, "test"))
    ocr = _model(
        tmp_path / "o",
        "ocr-zh",
        "1.0",
        "2026-01-01T00:00:00Z",
        files={"det": "det.onnx", "rec": "rec.onnx"},
    )
    (ocr / "det.onnx").write_bytes(b"not a network")
    (ocr / "rec.onnx").write_bytes(b"not a network")
    with pytest.raises(ModelError, match="cannot load the OCR models"):
        OcrZhBot().load(ModelRef("ocr-zh", "1.0", ocr, "test"))


def test_a_model_archive_that_climbs_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    from spotbot.core.artifacts import extract_model_archive
    from spotbot.core.errors import ModelError

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ModelError, match=r"not a readable model\.tar\.gz"):
        extract_model_archive(archive, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()
