"""The TaskStore interface: where jobs, tasks and results live (SQLite locally, OpenSearch in the cloud)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from spotbot.core.records import Job, Result, Task, TaskStatus

# A task that was claimed this many times without finishing (its worker died each time) is
# failed instead of being handed out again: an asset that kills its worker must not stall a job.
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(slots=True)
class SearchHit:
    job_id: str
    key: str
    bot: str
    labels: list[str]
    text: str
    score: float
    model_version: str | None = None
    tags: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "key": self.key,
            "bot": self.bot,
            "labels": self.labels,
            "text": self.text,
            "score": self.score,
            "model_version": self.model_version,
            "tags": self.tags,
        }


class TaskStore(ABC):
    """Jobs, their tasks and results. Every write is bulk and idempotent.

    Each worker has a home shard, and claims are atomic, so workers share work: `claim_tasks`
    hands out the home shard's PENDING tasks page by page (from the front) and marks them
    RUNNING; once it is empty, `steal_tasks` takes tasks from the back of the shard with the
    most left, so a job's wall time is its work divided by its workers, not its slowest shard.
    Worker ids begin with their slot's prefix (`owner_prefix`): a worker that starts in a slot
    first calls `reclaim_running(owner=...)`, which puts back whatever a dead predecessor in
    that slot left RUNNING, in whichever shard it had taken it from.
    """

    # -- jobs ---------------------------------------------------------------------------
    @abstractmethod
    def create_job(self, job: Job) -> Job:
        """Record a new job; if a job with that id exists, return it unchanged (idempotent)."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job:
        """The job, or JobNotFoundError."""

    @abstractmethod
    def update_job(self, job_id: str, unless_final: bool = False, **fields: Any) -> Job:
        """Set some fields of a job and return it.

        With unless_final, a job already SUCCEEDED, FAILED or CANCELLED is left as it is (and
        returned): a step still in flight when the job was cleaned up must not revive it.
        The check and the write are one atomic update.
        """

    @abstractmethod
    def list_jobs(self, limit: int = 100) -> list[Job]:
        """The most recent jobs first."""

    # -- tasks --------------------------------------------------------------------------
    @abstractmethod
    def put_tasks(self, tasks: Sequence[Task]) -> int:
        """Insert tasks that do not exist yet (by id); return how many were new."""

    @abstractmethod
    def claim_tasks(self, job_id: str, shard: int, worker: str, limit: int) -> list[Task]:
        """Mark up to `limit` PENDING tasks of the shard RUNNING for `worker` and return them."""

    @abstractmethod
    def steal_tasks(self, job_id: str, worker: str, limit: int) -> list[Task]:
        """Mark up to `limit` PENDING tasks of the shard with the most left RUNNING for `worker`.

        They come from the end of that shard, away from where its own worker claims, so the
        two rarely contend; an empty list means the job has nothing left to claim.
        """

    @abstractmethod
    def begin_attempt(self, job_id: str, task_ids: Sequence[str]) -> None:
        """Count an attempt on claimed tasks whose tagging starts now (a batch, not a page).

        Attempts count only what a worker was actually tagging, so a worker killed with a
        page of claimed tasks in hand does not bring the untouched ones closer to failing.
        """

    @abstractmethod
    def release_tasks(self, job_id: str, task_ids: Sequence[str]) -> int:
        """Put claimed tasks that were never worked on back to PENDING."""

    @abstractmethod
    def complete_tasks(self, results: Sequence[Result]) -> None:
        """Record results (DONE or FAILED) and index them for search, in bulk."""

    def complete_and_begin(
        self, results: Sequence[Result], job_id: str, next_ids: Sequence[str]
    ) -> None:
        """`complete_tasks(results)`, then `begin_attempt` on the next batch: one write where
        the store can (a worker's group commit between two batches)."""
        self.complete_tasks(results)
        self.begin_attempt(job_id, next_ids)

    @abstractmethod
    def reclaim_running(
        self,
        job_id: str,
        shard: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        owner: str | None = None,
    ) -> int:
        """Tasks left RUNNING by a dead worker go back to PENDING (or FAILED past max_attempts).

        All of the job's (or the shard's), or with `owner` only those held by a worker whose
        id begins with it: a worker slot's dead predecessors, while other slots work on.
        """

    @abstractmethod
    def requeue_failed(self, job_id: str) -> int:
        """Failed tasks go back to PENDING with a fresh attempt count; return how many."""

    @abstractmethod
    def count_tasks(self, job_id: str) -> dict[TaskStatus, int]:
        """How many tasks of the job are in each status (every status present, zeros included)."""

    @abstractmethod
    def shards_with_work(self, job_id: str) -> dict[int, int]:
        """Shard -> its tasks still to do (PENDING or RUNNING), for shards that have any."""

    @abstractmethod
    def find_reusable(
        self, bot: str, model_version: str | None, tasks: Sequence[Task], exclude_job: str
    ) -> dict[str, Result]:
        """Key -> a DONE result of another job of this bot and model version for the same
        asset: the same key, size and fingerprint (ETag, mtime and size). Tasks without a
        fingerprint are never matched. An only-new job reuses these instead of tagging."""

    @abstractmethod
    def iter_results(self, job_id: str, page_size: int = 1000) -> Iterator[Result]:
        """Every finished task (DONE, FAILED, SKIPPED) of the job as a Result, ordered by key."""

    def iter_result_lines(self, job_id: str, page_size: int = 1000) -> Iterator[bytes]:
        """`iter_results` as the lines of results.jsonl."""
        for line, _ in self.iter_finished_lines(job_id, page_size):
            yield line

    def iter_finished_lines(
        self, job_id: str, page_size: int = 1000
    ) -> Iterator[tuple[bytes, str | None]]:
        """`iter_results` as (line of results.jsonl, when the store recorded the outcome): what
        finalize's one pass needs for the results file and the report. Stores that keep the
        line override it."""
        for result in self.iter_results(job_id, page_size):
            yield result.to_line(), result.finished_at

    @abstractmethod
    def search(
        self,
        query: str,
        bot: str | None = None,
        job_id: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[SearchHit]:
        """Full-text search over result labels and text (OCR lines), best first.

        The order is stable (score, then job and key), so `offset` pages through the hits:
        page n of a listing is offset n * limit. OpenSearch reaches MAX_SEARCH_DEPTH hits deep
        at most (its result window), and so does the API's cursor.
        """

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def owner_prefix(slot: int) -> str:
    """The start of every worker id in a slot (a local worker, a Batch array child)."""
    return f"slot{slot}/"


#: How deep search pages go (OpenSearch's default result window, kept by every store alike).
MAX_SEARCH_DEPTH = 10_000


def empty_counts() -> dict[TaskStatus, int]:
    return {status: 0 for status in TaskStatus}
