"""Job limits have one home: their defaults and rules reach the machine's refs and the events."""

from __future__ import annotations

import pytest

from functions.events import LimitsModel
from spotbot.core.limits import DEFAULT_LIMITS, JobLimits
from workflows.tagging import TaggingRefs


def test_a_job_gets_at_least_an_arrays_two_shards_and_at_most_the_cap() -> None:
    limits = JobLimits(default_shards=4, max_shards=100)
    assert limits.shards_for(None) == 4
    assert limits.shards_for(1) == 2  # a Batch array has at least 2 children
    assert limits.shards_for(100) == 100
    with pytest.raises(ValueError, match="at most 100"):
        limits.shards_for(101)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_array_size": 2},
        {"max_array_size": 10_001},
        {"default_shards": 1},
        {"max_shards": 1},
        {"default_max_failure_pct": 101.0},
        {"default_poll_seconds": -1},
    ],
)
def test_impossible_limits_are_refused_everywhere_they_enter(changes: dict[str, float]) -> None:
    # GIVEN one impossible limit
    # THEN the core refuses it, and so does the functions' event model (a validation error)
    with pytest.raises(ValueError):
        JobLimits(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        LimitsModel(**changes)


def test_the_machine_and_the_functions_share_the_same_defaults() -> None:
    refs = TaggingRefs(
        partition="aws",
        init_function_arn="i",
        scan_function_arn="s",
        endpoint_function_arn="e",
        finalize_function_arn="f",
        cleanup_function_arn="c",
        requeue_function_arn="r",
        job_queue_arn="q",
        job_definition_arns={"ocr-zh": "d"},
    )
    assert refs.limits() == DEFAULT_LIMITS
    assert LimitsModel().to_limits() == DEFAULT_LIMITS
