"""Opening a shard rebuilds the job's bot and model from its record, one way for every worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotbot.core.errors import UnknownBotError, UsageError
from spotbot.core.records import Job, JobOptions
from spotbot.core.shard import job_bot_class, job_model, load_job_bot
from tests.fakebots import WordsBot


def _job(**options: object) -> Job:
    return Job(
        id="j1",
        bot="words",
        source="s",
        output="o",
        model_version="words-1",
        options=JobOptions(**options).to_dict(),  # type: ignore[arg-type]
    )


def test_the_recorded_spec_and_model_are_what_a_worker_loads() -> None:
    job = _job(bot_spec="tests.fakebots:WordsBot", model_origin="test code")
    bot, seconds = load_job_bot(job, threads=1)
    assert isinstance(bot, WordsBot) and seconds >= 0
    assert bot.model is not None and bot.model.version == "words-1" and bot.model.path is None
    assert job_model(job).origin == "test code"


def test_a_downloaded_copy_or_a_recorded_folder_is_the_model_path(tmp_path: Path) -> None:
    job = _job(bot_spec="tests.fakebots:WordsBot", model_path=str(tmp_path))
    assert job_model(job).path == tmp_path
    assert job_model(job, tmp_path / "copy").path == tmp_path / "copy"


def test_a_bot_that_is_not_the_jobs_is_refused() -> None:
    class OtherBot(WordsBot):
        name = "other"

    import tests.fakebots as module

    module.OtherBot = OtherBot  # type: ignore[attr-defined]
    try:
        with pytest.raises(UsageError, match="is for bot 'words', not 'other'"):
            job_bot_class(_job(), override="tests.fakebots:OtherBot")
    finally:
        del module.OtherBot  # type: ignore[attr-defined]
    with pytest.raises(UnknownBotError):
        job_bot_class(_job(bot_spec="no_such_module:Bot"))
