"""A job's options are typed: what init records is what a worker reads, whoever wrote it."""

from __future__ import annotations

from spotbot.core.records import Job, JobOptions


def test_options_round_trip_through_their_stored_form() -> None:
    options = JobOptions(
        bot_spec="pkg.mod:MyBot",
        model_path="/models/x",
        model_origin="folder /models/x",
        max_asset_bytes=1024,
        inference="endpoint",
        endpoint_name="ep-1",
        poll_seconds=5,
        retry_executions=("job-retry1",),
    )
    stored = options.to_dict()
    assert all(isinstance(key, str) for key in stored)
    assert JobOptions.from_dict(stored) == options


def test_a_record_with_other_writers_keys_and_string_numbers_still_reads() -> None:
    # GIVEN a record written by another component (numbers as strings, an unknown key)
    job = Job(
        id="j",
        bot="words",
        source="s",
        output="o",
        options={"max_asset_bytes": "2048", "poll_seconds": "7", "something_else": 1},
    )
    # THEN the typed view has the values, and the stored form keeps what it does not know
    assert job.opts.max_asset_bytes == 2048
    assert job.opts.poll_seconds == 7
    assert job.options["something_else"] == 1
    assert not job.cancel_requested


def test_an_empty_option_is_not_written() -> None:
    assert JobOptions().to_dict() == {}
    assert JobOptions(cancel_requested_at="2026-01-01T00:00:00Z").to_dict() == {
        "cancel_requested_at": "2026-01-01T00:00:00Z"
    }
