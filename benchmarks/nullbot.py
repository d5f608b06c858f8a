"""A bot that does almost nothing, so a benchmark measures the pipeline around it."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction


class NullBot(Bot):
    name = "null"
    media = "file"
    extensions: ClassVar[frozenset[str]] = frozenset({"txt"})
    batch_size = 64
    builtin_version = "null-1"
    builtin_origin = "benchmark code"

    def _load(self, model: ModelRef, threads: int) -> None:
        pass

    def decode(self, data: bytes, key: str) -> Any:
        return len(data)

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        return [{"tags": [{"label": f"len{n}", "score": 1.0}]} for n in items]


class SleepyBot(NullBot):
    """Each asset holds a number of work units; tagging it sleeps that many units (I/O-like
    work that does not hold the GIL, so threads stand in for Batch array children)."""

    name = "sleepy"
    batch_size = 4
    builtin_version = "sleepy-1"

    def decode(self, data: bytes, key: str) -> Any:
        return int(data or b"1")

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        time.sleep(sum(items) * float(os.environ.get("SPOTBOT_BENCH_UNIT", "0.02")))
        return [{"tags": [{"label": f"units{n}", "score": 1.0}]} for n in items]
