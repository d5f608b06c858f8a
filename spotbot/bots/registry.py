"""Finding bots: built-ins and third-party bots through the `spotbot.bots` entry-point group."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from spotbot.bots.base import Bot
from spotbot.errors import ModelError, UnknownBotError, UsageError
from spotbot.models import ModelManifest, ModelRef, ModelRegistry

ENTRY_POINT_GROUP = "spotbot.bots"


def available_bots() -> dict[str, str]:
    """Bot name -> import spec ("module:Class") for every installed bot, without importing them."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


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


def resolve_model(bot: type[Bot], registry: ModelRegistry, pin: str | None = None) -> ModelRef:
    """The model a job of this bot uses: the pinned one, else the registry's newest, else built-in.

    `pin` is a model directory (holding bot.json) or a version in the registry.
    """
    if pin:
        path = Path(pin).expanduser()
        if path.is_dir():
            manifest = ModelManifest.read(path)
            if manifest.bot != bot.name:
                raise ModelError(f"{path}: the model is for bot {manifest.bot!r}, not {bot.name!r}")
            return ModelRef(bot.name, manifest.version, path.absolute(), f"folder {path}")
        if bot.builtin_version and pin == bot.builtin_version:
            return ModelRef(bot.name, pin, None, bot.builtin_origin)
        manifest = registry.get(bot.name, pin)
        return ModelRef(
            bot.name, manifest.version, registry.path(bot.name, pin), f"registry {registry.root}"
        )
    versions = registry.versions(bot.name)
    if versions:
        newest = versions[0]
        return ModelRef(
            bot.name,
            newest.version,
            registry.path(bot.name, newest.version),
            f"registry {registry.root}",
        )
    if bot.builtin_version:
        return ModelRef(bot.name, bot.builtin_version, None, bot.builtin_origin)
    raise UsageError(f"bot {bot.name!r} has no model: import one with `spotbot models import PATH`")
