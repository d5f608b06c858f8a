"""A job's limits in one place: shard counts, Batch array sizes, polling, failure threshold.

The state machine's refs, the cloud steps and the functions' event models all take their
numbers and their rules from here: an AWS Batch array job has 2 to 10,000 children, so a job
has at least two shards, and arrays are cut into chunks of near-equal size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: AWS Batch: an array job has at least 2 and at most 10,000 children.
MIN_ARRAY_SIZE = 2
MAX_ARRAY_SIZE = 10_000
#: The least max_array_size that splits every shard count into arrays of at least 2: with at
#: most 2 per array an odd count cannot be split.
MIN_CHUNK_LIMIT = 3


@dataclass(frozen=True, slots=True)
class JobLimits:
    """The limits the state machine passes to init and requeue."""

    default_shards: int = 16
    max_shards: int = 100_000
    max_array_size: int = MAX_ARRAY_SIZE
    default_poll_seconds: int = 30
    default_max_failure_pct: float = 100.0

    def __post_init__(self) -> None:
        if not MIN_CHUNK_LIMIT <= self.max_array_size <= MAX_ARRAY_SIZE:
            raise ValueError(
                f"max_array_size must be within {MIN_CHUNK_LIMIT}..{MAX_ARRAY_SIZE:,}"
                " (an odd shard count cannot be split into arrays of 2)"
            )
        if self.max_shards < MIN_ARRAY_SIZE or self.default_shards < MIN_ARRAY_SIZE:
            raise ValueError(
                f"shards must be at least {MIN_ARRAY_SIZE} (a Batch array has at least"
                f" {MIN_ARRAY_SIZE} children)"
            )
        if self.default_poll_seconds < 0:
            raise ValueError("default_poll_seconds must not be negative")
        if not 0 <= self.default_max_failure_pct <= 100:
            raise ValueError("default_max_failure_pct must be within 0..100")

    def shards_for(self, requested: int | None) -> int:
        """The shard count of a job that asked for `requested` (None: the default).

        More than max_shards is the caller's mistake (ValueError); fewer than an array's
        least size is raised to it: a second shard costs one idle container.
        """
        shards = int(requested or self.default_shards)
        if shards > self.max_shards:
            raise ValueError(f"shards must be at most {self.max_shards}, got {shards}")
        return max(MIN_ARRAY_SIZE, shards)


DEFAULT_LIMITS = JobLimits()


def plan_chunks(shards: int, max_array_size: int = MAX_ARRAY_SIZE) -> list[dict[str, int]]:
    """Split ``shards`` into the fewest Batch arrays, near-equal in size, each at least 2.

    ``plan_chunks(25_000)`` -> sizes 8,334 / 8,333 / 8,333 with offsets 0 / 8,334 / 16,667.
    Near-equal sizes are never below 2 once ``max_array_size`` is at least 3: with k arrays,
    shards > (k - 1) * max_array_size >= 3k - 3, so shards // k >= 2.
    """
    if shards < MIN_ARRAY_SIZE:
        raise ValueError("a Batch array job has at least 2 children")
    if max_array_size < MIN_CHUNK_LIMIT:
        raise ValueError("max_array_size must be at least 3 (an odd count cannot split into 2s)")
    count = math.ceil(shards / max_array_size)
    base, extra = divmod(shards, count)
    chunks, offset = [], 0
    for index in range(count):
        size = base + (1 if index < extra else 0)
        chunks.append({"index": index, "offset": offset, "size": size})
        offset += size
    return chunks
