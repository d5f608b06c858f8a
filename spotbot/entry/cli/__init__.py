"""The `spotbot` command line: tag, resume, status, jobs, search, bots, models and train.

`main` is the click group (in common.py); each module adds its commands to it when imported.
"""

from spotbot.entry.cli import cloud, cost, doctor, local, models, train, work_serve  # noqa: F401  (registers the commands)
from spotbot.entry.cli.common import main

__all__ = ["main"]
