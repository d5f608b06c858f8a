"""The shard worker: claim a shard's tasks page by page, read, tag in batches, write results, mark tasks."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import AssetError, BotUnavailableError, one_line
from spotbot.core.parts import PartStream
from spotbot.core.records import Job, Result, Task, TaskStatus
from spotbot.core.sinks import ResultSink
from spotbot.core.sources import Source
from spotbot.core.store import TaskStore, owner_prefix

log = logging.getLogger(__name__)

DEFAULT_MAX_ASSET_BYTES = 50 * 1024 * 1024
SCAN_POLL_SECONDS = 0.05  # how often an idle worker looks for tasks while the scan goes on


def available_cpus() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(slots=True)
class WorkerConfig:
    page_size: int = 256  # tasks claimed at a time from the home shard, at most 4 batches
    batch_size: int | None = None  # assets per predict call; None: the bot's own batch size
    read_concurrency: int = 8  # assets read at once (S3 GETs in flight)
    max_asset_bytes: int = DEFAULT_MAX_ASSET_BYTES
    steal: bool = True  # once the home shard is empty, take over other shards' tasks


@dataclass(slots=True)
class ShardStats:
    shard: int
    done: int = 0
    failed: int = 0
    released: int = 0
    reclaimed: int = 0
    stolen: int = 0  # tasks taken over from other shards
    wall_seconds: float = 0.0
    bot_seconds: float = 0.0  # time inside the bot (decode + predict)
    read_seconds: float = 0.0  # time the tagging loop waited for reads
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class _Ready:
    """A read done in line, collected like a pooled read's future (without its locks)."""

    __slots__ = ("data", "error")

    def __init__(self, data: bytes, error: Exception | None):
        self.data, self.error = data, error

    def result(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.data


@dataclass(slots=True)
class _Item:
    task: Task
    data: bytes | None = None
    error: str | None = None
    decoded: Any = None


@dataclass
class ShardWorker:
    """Works its home shard of one job, then takes over other shards' tasks, until the job has
    nothing left to claim or `stop` is set.

    Claims are small (a few batches from the home shard, one batch when taking over), so at
    the end of a job no worker idles while another still holds a queue of work.

    Crash safety comes from the order of writes: result objects first (same path on every
    attempt, atomic), then the tasks' status in one bulk write. A worker killed between the
    two leaves its tasks RUNNING; the next worker in its slot (the worker id's prefix)
    reclaims them and writes the same result objects again, so nothing is lost and nothing is
    duplicated.
    """

    store: TaskStore
    source: Source
    sink: ResultSink
    bot: Bot
    job: Job
    shard: int
    worker_id: str
    config: WorkerConfig = field(default_factory=WorkerConfig)
    stop: threading.Event = field(default_factory=threading.Event)
    on_batch: Callable[[ShardStats], None] | None = None
    # The worker's slot (default: its home shard, as for a Batch array child): its id begins
    # with the slot's prefix, and at start it reclaims what its slot's predecessors left.
    slot: int | None = None
    # While it returns True (the job's listing is still being written), a worker that finds
    # nothing to claim waits for more instead of leaving (the local runner starts its workers
    # while it scans).
    more_coming: Callable[[], bool] | None = None
    _per_asset: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.slot = self.shard if self.slot is None else self.slot
        prefix = owner_prefix(self.slot)
        if not self.worker_id.startswith(prefix):
            self.worker_id = prefix + self.worker_id

    def run(self) -> ShardStats:
        stats = ShardStats(shard=self.shard)
        started = time.perf_counter()
        assert self.slot is not None
        stats.reclaimed = self.store.reclaim_running(self.job.id, owner=owner_prefix(self.slot))
        batch_size = max(1, self.config.batch_size or self.bot.batch_size)
        page = max(1, min(self.config.page_size, 4 * batch_size))
        self._per_asset = bool(self.job.opts.per_asset_results)
        home_empty = False
        scanning = self.more_coming is not None
        with ThreadPoolExecutor(
            max_workers=max(1, self.config.read_concurrency), thread_name_prefix="read"
        ) as pool:
            while not self.stop.is_set():
                tasks: list[Task] = []
                if not home_empty:
                    tasks = self.store.claim_tasks(self.job.id, self.shard, self.worker_id, page)
                    home_empty = not tasks
                if home_empty and self.config.steal:
                    tasks = self.store.steal_tasks(self.job.id, self.worker_id, batch_size)
                    stats.stolen += len(tasks)
                if not tasks and scanning:
                    # Nothing yet: wait while the listing goes on; once it is complete, look
                    # once more (its last tasks may have come after this claim).
                    assert self.more_coming is not None
                    scanning = self.more_coming()
                    if scanning:
                        self.stop.wait(SCAN_POLL_SECONDS)
                    home_empty = False
                    continue
                if not tasks:
                    break
                batches = [tasks[i : i + batch_size] for i in range(0, len(tasks), batch_size)]
                pending = self._start_reads(pool, batches[0])
                begun = False  # whether this batch's attempt is counted already
                for index, batch in enumerate(batches):
                    # A stop hands back what was not begun; a batch whose attempt the last
                    # write already counted is the batch in hand: it is tagged first (the
                    # stop grace bounds it), so no asset is counted as tried and not tried.
                    if self.stop.is_set() and not begun:
                        left = [t.id for b in batches[index:] for t in b]
                        stats.released += self.store.release_tasks(self.job.id, left)
                        break
                    if not begun:
                        self.store.begin_attempt(self.job.id, [t.id for t in batch])
                    waited = time.perf_counter()
                    items = [self._collect(task, fut) for task, fut in pending]
                    stats.read_seconds += time.perf_counter() - waited
                    if index + 1 < len(batches):  # read the next batch while this one is tagged
                        pending = self._start_reads(pool, batches[index + 1])
                    try:
                        results = self._tag(items, stats)
                    except BotUnavailableError:
                        # Nothing of this batch was recorded: hand it and the rest back.
                        left = [t.id for b in batches[index:] for t in b]
                        stats.released += self.store.release_tasks(self.job.id, left)
                        raise
                    # One write: this batch's results and the next batch's attempt.
                    following = batches[index + 1] if index + 1 < len(batches) else []
                    if self.stop.is_set():
                        following = []
                    self.store.complete_and_begin(results, self.job.id, [t.id for t in following])
                    begun = bool(following)
                    if self.on_batch:
                        self.on_batch(stats)
        stats.stopped = self.stop.is_set()
        stats.wall_seconds = time.perf_counter() - started
        return stats

    # -- reading ----------------------------------------------------------------------------
    def _start_reads(
        self, pool: ThreadPoolExecutor, batch: Sequence[Task]
    ) -> list[tuple[Task, Future[bytes] | _Ready | None]]:
        cap = self.config.max_asset_bytes
        out: list[tuple[Task, Future[bytes] | _Ready | None]] = []
        for task in batch:
            if task.size is not None and (task.size == 0 or task.size > cap):
                out.append((task, None))  # known bad from the listing: don't download it
            elif self.source.remote:
                out.append((task, pool.submit(self.source.read, task.key, cap)))
            else:  # a local file: read now, in line
                try:
                    out.append((task, _Ready(self.source.read(task.key, cap), None)))
                except Exception as exc:  # raised where a pooled read's would be: at collect
                    out.append((task, _Ready(b"", exc)))
        return out

    def _collect(self, task: Task, future: Future[bytes] | _Ready | None) -> _Item:
        cap = self.config.max_asset_bytes
        if future is None:
            if task.size == 0:
                return _Item(task, error="empty file (0 bytes)")
            return _Item(
                task,
                error=f"asset too large: {(task.size or 0) / 1e6:.1f} MB is over"
                f" the {cap / 1e6:.1f} MB cap",
            )
        try:
            data = future.result()
        except AssetError as exc:
            return _Item(task, error=one_line(exc))
        if not data:
            return _Item(task, error="empty file (0 bytes)")
        return _Item(task, data=data)

    # -- tagging ----------------------------------------------------------------------------
    def _tag(self, items: list[_Item], stats: ShardStats) -> list[Result]:
        """Tag a batch; its results (per-asset objects written, if asked for), to commit."""
        began = time.perf_counter()
        for item in items:
            if item.error is None:
                try:
                    item.decoded = decode_asset(self.bot, item.data or b"", item.task.key)
                except AssetError as exc:
                    item.error = one_line(exc)
                item.data = None
        ready = [item for item in items if item.error is None]
        predictions = self._predict(ready)
        stats.bot_seconds += time.perf_counter() - began

        results = []
        for item in items:
            if item.error is None:
                pred = predictions[id(item)]
                if isinstance(pred, str):
                    item.error = pred
            if item.error is not None:
                results.append(self._result(item.task, TaskStatus.FAILED, error=item.error))
                stats.failed += 1
                continue
            prediction = predictions[id(item)]
            assert isinstance(prediction, dict)
            result = self._result(item.task, TaskStatus.DONE, prediction=prediction)
            if self._per_asset:
                self.sink.write_result(result)
            results.append(result)
            stats.done += 1
        return results

    def _predict(self, ready: list[_Item]) -> dict[int, Prediction | str]:
        outcomes = predict_isolated(self.bot.predict, [item.decoded for item in ready])
        return {id(item): outcome for item, outcome in zip(ready, outcomes, strict=True)}

    def _result(
        self,
        task: Task,
        status: TaskStatus,
        prediction: Prediction | None = None,
        error: str | None = None,
    ) -> Result:
        extra = dict(prediction or {})
        tags = list(extra.pop("tags", []))
        return Result(
            job_id=self.job.id,
            key=task.key,
            bot=self.job.bot,
            model_version=self.job.model_version,
            status=status,
            tags=tags,
            extra=extra,
            error=error,
        )


# -- failure isolation: one bad asset fails itself, never its batch (worker and serving) ----
def decode_asset(bot: Bot, data: bytes, key: str) -> Any:
    """The bot's decoded input; any failure, a decoder's own bug included, is an AssetError.

    A container the bot takes (a PDF, a multi-page TIFF, a video) is opened and checked here
    and comes back as a PartStream, whose pages or frames predict_isolated tags lazily.
    """
    try:
        stream = bot.open_container(data, key)
        if stream is not None:
            return stream
        return bot.decode(data, key)
    except AssetError:
        raise
    except Exception as exc:  # a bot's decoder bug must fail one asset, not the shard
        raise AssetError(f"cannot decode: {type(exc).__name__}: {exc}") from exc


def error_text(exc: Exception) -> str:
    """The one-line error an asset's result carries for what predict raised."""
    if isinstance(exc, AssetError):
        return one_line(exc)
    return one_line(f"bot error: {type(exc).__name__}: {exc}")


def predict_isolated(
    predict: Callable[[Sequence[Any]], Sequence[Prediction]], decoded: Sequence[Any]
) -> list[Prediction | str]:
    """One prediction, or one error line, per input.

    A batch that fails as a whole is tagged again one by one, so only the culprit fails.
    BotUnavailableError propagates: an outage is not the assets' fault.
    """
    if not decoded:
        return []
    if any(isinstance(item, PartStream) for item in decoded):
        # Containers are tagged part by part by their own bot, each on its own; the plain
        # inputs of the batch still go to predict together.
        plain = iter(
            predict_isolated(predict, [d for d in decoded if not isinstance(d, PartStream)])
        )
        return [_tag_stream(d) if isinstance(d, PartStream) else next(plain) for d in decoded]
    try:
        predictions = list(predict(decoded))
        if len(predictions) != len(decoded):
            raise RuntimeError(f"bot returned {len(predictions)} predictions for {len(decoded)}")
        return list(predictions)
    except BotUnavailableError:
        raise
    except Exception as exc:
        if len(decoded) == 1:
            return [error_text(exc)]
        if not isinstance(exc, AssetError):
            log.warning("bot failed on a batch of %d (%s); retrying one by one", len(decoded), exc)
    out: list[Prediction | str] = []
    for item in decoded:
        try:
            out.append(predict([item])[0])
        except BotUnavailableError:
            raise
        except Exception as exc:
            out.append(error_text(exc))
    return out


def _tag_stream(stream: PartStream) -> Prediction | str:
    """A container's one prediction, or the one-line error of its first bad page or frame."""
    try:
        return stream.tag()
    except BotUnavailableError:
        raise
    except Exception as exc:
        return error_text(exc)
