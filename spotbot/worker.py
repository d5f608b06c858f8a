"""The shard worker: claim a shard's tasks page by page, read, tag in batches, write results, mark tasks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from spotbot.bots.base import Bot, Prediction
from spotbot.errors import AssetError, SpotbotError
from spotbot.model import Job, Result, Task, TaskStatus
from spotbot.outputs import ResultSink
from spotbot.sources import Source
from spotbot.stores.base import TaskStore

log = logging.getLogger(__name__)

DEFAULT_MAX_ASSET_BYTES = 50 * 1024 * 1024


@dataclass(slots=True)
class WorkerConfig:
    page_size: int = 256  # tasks claimed at a time
    batch_size: int | None = None  # assets per predict call; None: the bot's own batch size
    read_concurrency: int = 8  # assets read at once (S3 GETs in flight)
    max_asset_bytes: int = DEFAULT_MAX_ASSET_BYTES


@dataclass(slots=True)
class ShardStats:
    shard: int
    done: int = 0
    failed: int = 0
    released: int = 0
    reclaimed: int = 0
    wall_seconds: float = 0.0
    bot_seconds: float = 0.0  # time inside the bot (decode + predict)
    read_seconds: float = 0.0  # time the tagging loop waited for reads
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class BotUnavailableError(SpotbotError):
    """The bot's backend (a model endpoint) cannot answer at all.

    Raised from `Bot.predict`, it stops the worker instead of failing the batch: an outage
    must not turn every remaining asset into a FAILED task. The page's unfinished tasks go
    back to PENDING for the next worker.
    """


def one_line(message: object, limit: int = 300) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class _Item:
    task: Task
    data: bytes | None = None
    error: str | None = None
    decoded: Any = None


@dataclass
class ShardWorker:
    """Works one shard of one job to the end, or until `stop` is set.

    Crash safety comes from the order of writes: result objects first (same path on every
    attempt, atomic), then the tasks' status in one bulk write. A worker killed between the
    two leaves its tasks RUNNING; the next worker on the shard reclaims them and writes the
    same result objects again, so nothing is lost and nothing is duplicated.
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

    def run(self) -> ShardStats:
        stats = ShardStats(shard=self.shard)
        started = time.perf_counter()
        stats.reclaimed = self.store.reclaim_running(self.job.id, self.shard)
        batch_size = max(1, self.config.batch_size or self.bot.batch_size)
        with ThreadPoolExecutor(
            max_workers=max(1, self.config.read_concurrency), thread_name_prefix="read"
        ) as pool:
            while not self.stop.is_set():
                tasks = self.store.claim_tasks(
                    self.job.id, self.shard, self.worker_id, self.config.page_size
                )
                if not tasks:
                    break
                batches = [tasks[i : i + batch_size] for i in range(0, len(tasks), batch_size)]
                pending = self._start_reads(pool, batches[0])
                for index, batch in enumerate(batches):
                    if self.stop.is_set():
                        left = [t.id for b in batches[index:] for t in b]
                        stats.released += self.store.release_tasks(self.job.id, left)
                        break
                    self.store.begin_attempt(self.job.id, [t.id for t in batch])
                    waited = time.perf_counter()
                    items = [self._collect(task, fut) for task, fut in pending]
                    stats.read_seconds += time.perf_counter() - waited
                    if index + 1 < len(batches):  # read the next batch while this one is tagged
                        pending = self._start_reads(pool, batches[index + 1])
                    try:
                        self._tag_and_record(items, stats)
                    except BotUnavailableError:
                        # Nothing of this batch was recorded: hand it and the rest back.
                        left = [t.id for b in batches[index:] for t in b]
                        stats.released += self.store.release_tasks(self.job.id, left)
                        raise
                    if self.on_batch:
                        self.on_batch(stats)
        stats.stopped = self.stop.is_set()
        stats.wall_seconds = time.perf_counter() - started
        return stats

    # -- reading ----------------------------------------------------------------------------
    def _start_reads(
        self, pool: ThreadPoolExecutor, batch: Sequence[Task]
    ) -> list[tuple[Task, Future[bytes] | None]]:
        cap = self.config.max_asset_bytes
        out: list[tuple[Task, Future[bytes] | None]] = []
        for task in batch:
            if task.size is not None and (task.size == 0 or task.size > cap):
                out.append((task, None))  # known bad from the listing: don't download it
            else:
                out.append((task, pool.submit(self.source.read, task.key, cap)))
        return out

    def _collect(self, task: Task, future: Future[bytes] | None) -> _Item:
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
    def _tag_and_record(self, items: list[_Item], stats: ShardStats) -> None:
        began = time.perf_counter()
        for item in items:
            if item.error is None:
                try:
                    item.decoded = self.bot.decode(item.data or b"", item.task.key)
                except AssetError as exc:
                    item.error = one_line(exc)
                except Exception as exc:  # a bot's decoder bug must fail one asset, not the shard
                    item.error = one_line(f"cannot decode: {type(exc).__name__}: {exc}")
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
            self.sink.write_result(result)
            results.append(result)
            stats.done += 1
        self.store.complete_tasks(results)

    def _predict(self, ready: list[_Item]) -> dict[int, Prediction | str]:
        if not ready:
            return {}
        try:
            predictions = self.bot.predict([item.decoded for item in ready])
            if len(predictions) != len(ready):
                raise RuntimeError(f"bot returned {len(predictions)} predictions for {len(ready)}")
            return {id(item): p for item, p in zip(ready, predictions, strict=True)}
        except BotUnavailableError:
            raise
        except AssetError as exc:
            if len(ready) == 1:
                return {id(ready[0]): one_line(exc)}
        except Exception as exc:
            log.warning("bot failed on a batch of %d (%s); retrying one by one", len(ready), exc)
            if len(ready) == 1:
                return {id(ready[0]): one_line(f"bot error: {type(exc).__name__}: {exc}")}
        # The batch failed as a whole: tag one by one so only the culprit fails.
        out: dict[int, Prediction | str] = {}
        for item in ready:
            try:
                out[id(item)] = self.bot.predict([item.decoded])[0]
            except BotUnavailableError:
                raise
            except AssetError as exc:
                out[id(item)] = one_line(exc)
            except Exception as exc:
                out[id(item)] = one_line(f"bot error: {type(exc).__name__}: {exc}")
        return out

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
