"""Bots: the interface, the registry, and the built-in bots."""

from spotbot.bots.base import Bot, Prediction
from spotbot.bots.registry import available_bots, load_bot_class, resolve_model

__all__ = ["Bot", "Prediction", "available_bots", "load_bot_class", "resolve_model"]
