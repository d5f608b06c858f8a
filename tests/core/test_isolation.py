"""Failure isolation, shared by the shard worker and serving: one bad asset fails only itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from spotbot.core.artifacts import ModelRef
from spotbot.core.errors import AssetError, BotUnavailableError
from spotbot.core.worker import decode_asset, predict_isolated
from tests.fakebots import WordsBot


def test_a_failing_batch_is_tagged_one_by_one_so_only_the_culprit_fails() -> None:
    bot = WordsBot()
    bot.load(ModelRef("words", "words-1", None, "test code"))
    outcomes = predict_isolated(bot.predict, ["a b", "CRASH here", "c"])
    assert [o["text"] for o in outcomes if isinstance(o, dict)] == ["a b", "c"]
    assert outcomes[1] == "bot error: RuntimeError: the model fell over"


def test_an_asset_error_from_predict_is_its_message() -> None:
    def predict(items: Sequence[Any]) -> list[dict[str, Any]]:
        if "bad" in items:
            raise AssetError("the asset is bad")
        return [{"tags": []} for _ in items]

    assert predict_isolated(predict, ["ok", "bad"]) == [{"tags": []}, "the asset is bad"]


def test_a_bot_that_returns_too_few_predictions_fails_the_batch_not_silently() -> None:
    # GIVEN a bot that drops a prediction (one for two inputs, none for one)
    outcomes = predict_isolated(lambda items: [{"tags": []}] if len(items) > 1 else [], ["a", "b"])
    # THEN no asset is paired with another's prediction: both fail with a bot error
    assert all(isinstance(o, str) and o.startswith("bot error: ") for o in outcomes)


def test_an_outage_is_not_the_assets_fault() -> None:
    def predict(items: Sequence[Any]) -> list[dict[str, Any]]:
        raise BotUnavailableError("endpoint down")

    with pytest.raises(BotUnavailableError):
        predict_isolated(predict, ["a", "b"])


def test_a_decoders_own_bug_is_the_assets_one_line_error() -> None:
    class BuggyBot(WordsBot):
        def decode(self, data: bytes, key: str) -> str:
            raise KeyError("oops")

    with pytest.raises(AssetError, match=r"^cannot decode: KeyError: 'oops'$"):
        decode_asset(BuggyBot(), b"x", "a.txt")
    with pytest.raises(AssetError, match="not UTF-8"):
        decode_asset(WordsBot(), b"\xff\xfe\xfa", "a.txt")
