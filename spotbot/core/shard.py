"""Opening a shard: the bot and the model a job recorded at init, loaded once per worker.

The local runner's worker processes and the Batch worker both start from here, so a job's
bot and model are rebuilt from its record in one way only.
"""

from __future__ import annotations

import time
from pathlib import Path

from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot
from spotbot.core.errors import UsageError
from spotbot.core.plugins import load_bot_class
from spotbot.core.records import Job


def job_bot_class(job: Job, override: str | None = None) -> type[Bot]:
    """The job's bot class: `override` (a module:Class spec), else what the job asked for."""
    cls = load_bot_class(override or job.opts.bot_spec or job.bot)
    if cls.name != job.bot:
        raise UsageError(f"job {job.id} is for bot {job.bot!r}, not {cls.name!r}")
    return cls


def job_model(job: Job, path: Path | None = None) -> ModelRef:
    """The model the job resolved at init; `path` is where a worker put its downloaded copy."""
    if path is None and job.opts.model_path:
        path = Path(job.opts.model_path)
    return ModelRef(job.bot, job.model_version or "", path, job.opts.model_origin)


def load_job_bot(
    job: Job, threads: int, override: str | None = None, model: ModelRef | None = None
) -> tuple[Bot, float]:
    """The job's bot with its model loaded, and the seconds the load took."""
    bot = job_bot_class(job, override)()
    began = time.perf_counter()
    bot.load(model or job_model(job), threads=threads)
    return bot, time.perf_counter() - began
