"""The `spotbot` command line: tag, resume, status, jobs, search, bots, models and train.

`main` is the click group (in common.py); each module adds its commands to it when imported.
"""

from spotbot.cli import local, models, runtime, train  # noqa: F401  (registers the commands)
from spotbot.cli.common import main

__all__ = ["main"]
