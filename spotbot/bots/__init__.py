"""Bots: the interface, the registry, and the built-in bots."""

from spotbot.core.artifacts import resolve_model
from spotbot.core.bot import Bot, Prediction
from spotbot.core.plugins import available_bots, load_bot_class

__all__ = ["Bot", "Prediction", "available_bots", "load_bot_class", "resolve_model"]
