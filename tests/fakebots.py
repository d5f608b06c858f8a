"""Small real bots for tests: they implement the Bot interface in full, with no model to load."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import AssetError, ModelError


class WordsBot(Bot):
    """Tags a UTF-8 text file with its words (label = word, score = share of the words).

    SPOTBOT_TEST_DELAY (seconds per asset) slows it down so tests can kill a run mid-way;
    a text containing "SLOW" takes ten times as long.
    Text containing "CRASH" raises a plain exception in predict, to exercise bot-error paths.
    """

    name = "words"
    description = "test bot: the words of a text file"
    media = "text"
    extensions: ClassVar[frozenset[str]] = frozenset({"txt"})
    batch_size = 4
    builtin_version = "words-1"
    builtin_origin = "test code"

    def _load(self, model: ModelRef, threads: int) -> None:
        self.delay = float(os.environ.get("SPOTBOT_TEST_DELAY", "0"))
        # SPOTBOT_TEST_LOAD_DELAY (seconds) stands in for a large model's load;
        # SPOTBOT_TEST_LOAD_FAIL for a model that cannot load on this machine.
        time.sleep(float(os.environ.get("SPOTBOT_TEST_LOAD_DELAY", "0")))
        if os.environ.get("SPOTBOT_TEST_LOAD_FAIL"):
            raise ModelError(os.environ["SPOTBOT_TEST_LOAD_FAIL"])

    def decode(self, data: bytes, key: str) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AssetError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        out = []
        for text in items:
            if self.delay:
                time.sleep(self.delay * (10 if "SLOW" in text else 1))
            if "CRASH" in text:
                raise RuntimeError("the model fell over")
            words = text.split()
            tags = (
                [
                    {"label": w, "score": round(words.count(w) / len(words), 4)}
                    for w in dict.fromkeys(words)
                ]
                if words
                else []
            )
            out.append({"tags": sorted(tags, key=lambda t: -t["score"]), "text": text.strip()})
        return out
