"""Finding bots: built-ins and third-party bots through the `spotbot.bots` entry-point group."""

from __future__ import annotations

import functools
import importlib
import sys
from importlib.metadata import entry_points

from spotbot.core.bot import Bot
from spotbot.core.errors import UnknownBotError

ENTRY_POINT_GROUP = "spotbot.bots"


def available_bots() -> dict[str, str]:
    """Bot name -> import spec ("module:Class") for every installed bot, without importing them."""
    return dict(_installed_bots(tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def _installed_bots(path: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Finding entry points reads every installed distribution's metadata (a tenth of a second
    # in a large environment), and one run looks its bot up several times: once per set of
    # import paths (a distribution installed on a new path is found).
    return tuple((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_bot_class(spec: str) -> type[Bot]:
    """The Bot class for a registered name, or an explicit "package.module:Class" spec."""
    target = available_bots().get(spec)
    if target is None:
        if ":" not in spec:
            known = ", ".join(sorted(available_bots())) or "none"
            raise UnknownBotError(f"unknown bot {spec!r} (installed: {known})")
        target = spec
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownBotError(f"cannot load bot {spec!r} from {target}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Bot)):
        raise UnknownBotError(f"{target} is not a spotbot Bot class")
    return cls
