"""A bot that does almost nothing, so a benchmark measures the pipeline around it."""

from __future__ import annotations

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
