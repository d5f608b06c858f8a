"""The local runner: init -> scan -> work (a process pool, one worker per shard) -> finalize."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from spotbot.aws.locations import open_sink, open_source
from spotbot.core.artifacts import ModelRegistry
from spotbot.core.errors import (
    EnvironmentFault,
    JobLockedError,
    ModelError,
    SpotbotError,
    UsageError,
)
from spotbot.core.guards import JobGuard, begin_run, end_run
from spotbot.core.records import Job, JobStatus, utcnow
from spotbot.core.shard import job_bot_class, load_job_bot
from spotbot.core.sqlite_store import SqliteTaskStore
from spotbot.core.steps import finalize_job, init_job, job_counts, reopen_job, scan_job
from spotbot.core.store import TaskStore
from spotbot.core.worker import DEFAULT_MAX_ASSET_BYTES, ShardWorker, WorkerConfig, available_cpus

log = logging.getLogger(__name__)

STORE_FILE = "spotbot.sqlite3"
#: Tasks a local scan writes at once, at most (see scan_job's write_batch).
SCAN_WRITE_BATCH = 10_000


def default_home() -> Path:
    env = os.environ.get("SPOTBOT_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("spotbot", appauthor=False))


def default_workers() -> int:
    return available_cpus()


@dataclass(slots=True)
class Home:
    """Everything spotbot keeps on this machine: the task store, the model registry, job locks."""

    root: Path

    @property
    def store_path(self) -> Path:
        return self.root / STORE_FILE

    @property
    def models(self) -> Path:
        env = os.environ.get("SPOTBOT_MODELS")
        return Path(env).expanduser() if env else self.root / "models"

    def store(self, check: bool = True) -> SqliteTaskStore:
        """The task store; `check=False` skips the checks on open (the write-ahead log's
        checksums, SQLite's quick_check: reads of the whole files) for a process that opens
        it while another holds it open, checked: SQLite replays nothing for a second
        connection."""
        return SqliteTaskStore(self.store_path, check=check)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.models)

    @contextlib.contextmanager
    def job_lock(self, job_id: str) -> Iterator[None]:
        """Held while a process runs the job; the OS drops it when that process dies."""
        folder = self.root / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{job_id}.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise JobLockedError(f"job {job_id} is already running (pid {holder})") from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(slots=True)
class Progress:
    """What the progress display is told, as the job goes."""

    phase: str
    counts: dict[str, int]
    scanned: int = 0


@dataclass
class RunOutcome:
    job: Job
    summary: dict[str, Any] | None
    interrupted: bool = False
    shard_stats: list[dict[str, Any]] = field(default_factory=list)


# -- the worker process ------------------------------------------------------------------------
_STOP = threading.Event()


_LOADING = threading.Event()


class _StoppedWhileLoading(Exception):
    """Raised by the stop signal into a model load: nothing is claimed yet, so leave now."""


def _on_stop_signal(signum: int, frame: object) -> None:
    _STOP.set()
    if _LOADING.is_set():
        # A large model takes seconds to load and no task is claimed during the load: abort
        # it (the exception surfaces at the load's next Python step) rather than finish it.
        _LOADING.clear()
        raise _StoppedWhileLoading


def _worker_init(parent_pid: int) -> None:
    # Die with the runner: a worker orphaned by `kill -9` of its parent must not go on working
    # a job that a later `resume` will also work.
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)


def run_shard(
    home_root: str,
    job_id: str,
    shard: int,
    threads: int,
    config: WorkerConfig,
    slot: int = 0,
    scanning: bool = False,
) -> dict[str, Any]:
    """Entry point of one worker process: load the bot once, then work from its home shard
    until the job has nothing left to claim (and, if it started while the job was being
    scanned, its listing is complete)."""
    home = Home(Path(home_root))
    # The runner holds the store open, checked, for as long as its workers run.
    with home.store(check=False) as store:
        job = store.get_job(job_id)
        try:
            _LOADING.set()
            if _STOP.is_set():
                raise _StoppedWhileLoading
            bot, load_seconds = load_job_bot(job, threads)
        except _StoppedWhileLoading:
            return {"shard": shard, "stopped": True, "load_seconds": None}
        finally:
            _LOADING.clear()
        source = open_source(job.source)
        sink = open_sink(job.output)
        guard = JobGuard(store, job_id, claim_size=config.page_size)
        worker = ShardWorker(
            store=store,
            source=source,
            sink=sink,
            bot=bot,
            job=job,
            shard=shard,
            worker_id=f"{os.uname().nodename}:{os.getpid()}:{shard}",
            config=config,
            stop=_STOP,
            slot=slot,
            # Too many failures, or the budget: stop claiming (every worker sees the job's
            # abort_reason at its next check).
            on_batch=lambda _: _STOP.set() if guard() else None,
            more_coming=(lambda: not store.get_job(job_id).scan_complete) if scanning else None,
        )
        stats = worker.run().to_dict()
        stats["load_seconds"] = load_seconds
        return stats


# -- the runner -------------------------------------------------------------------------------
class LocalRunner:
    def __init__(
        self,
        home: Path,
        workers: int | None = None,
        config: WorkerConfig | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ):
        self.home = Home(home)
        self.workers = workers or default_workers()
        self.config = config or WorkerConfig()
        self.on_progress = on_progress
        self._stop = threading.Event()

    def create(
        self,
        *,
        bot: str,
        source: str,
        output: str,
        model: str | None = None,
        max_failure_pct: float = 100.0,
        max_asset_bytes: int = DEFAULT_MAX_ASSET_BYTES,
        shards: int | None = None,
        job_id: str | None = None,
        per_asset_results: bool = False,
        only_new: bool = False,
        budget_usd: float | None = None,
        vcpu_hour_usd: float | None = None,
    ) -> Job:
        with self.home.store() as store:
            return init_job(
                store,
                self.home.registry(),
                bot=bot,
                source=open_source(source),
                sink=open_sink(output),
                shards=shards or self.workers,
                model=model,
                max_failure_pct=max_failure_pct,
                max_asset_bytes=max_asset_bytes,
                job_id=job_id,
                per_asset_results=per_asset_results,
                only_new=only_new,
                budget_usd=budget_usd,
                vcpu_hour_usd=vcpu_hour_usd,
            )

    def stop(self) -> None:
        """Ask the run to stop after the batches in flight (what Ctrl-C does)."""
        self._stop.set()

    def run(self, job_id: str, reopen_failed: bool = False) -> RunOutcome:
        """Scan (if not done), work every shard, finalize. Safe to call again on any job state.

        A FAILED job is run again only when asked (`reopen_failed`, what `spotbot resume` does):
        its unfinished tasks are worked and it is finalized anew (its threshold included).
        """
        with self.home.job_lock(job_id), self.home.store() as store:
            job = store.get_job(job_id)
            stopped = (JobStatus.FAILED, JobStatus.BUDGET_EXCEEDED)
            if job.status in stopped and reopen_failed:
                reopen_job(store, job_id)
                job = store.update_job(job_id, status=JobStatus.INTERRUPTED, finished_at=None)
            if job.status.is_final:
                return RunOutcome(job, None)
            if job.status == JobStatus.INTERRUPTED:
                job = store.update_job(
                    job_id, status=JobStatus.RUNNING if job.scan_complete else JobStatus.SCANNING
                )
            # Nobody else holds the job lock, so whatever is RUNNING was left by a dead worker.
            store.reclaim_running(job_id)
            workers: _Workers | None = None
            try:
                if not job.scan_complete:
                    workers = self._scan(store, job)
                    job = store.get_job(job_id)
                if self._stop.is_set():
                    stats = self._await_workers(store, job, workers) if workers else []
                    return self._interrupted(store, job, stats)
                job = store.update_job(job_id, status=JobStatus.RUNNING)
                if workers is None:
                    begin_run(store, job_id, default_workers())
                    workers = self._start_workers(store, job)
                stats = self._await_workers(store, job, workers) if workers else []
                job = store.get_job(job_id)
                if self._stop.is_set():
                    return self._interrupted(store, job, stats)
                summary = finalize_job(
                    store, open_sink(job.output), job, source=open_source(job.source)
                )
            except EnvironmentFault as exc:
                # The disk or the output failed, not the job: stop resumably, say what failed.
                store.update_job(job_id, status=JobStatus.INTERRUPTED, error=str(exc))
                raise JobInterruptedError(
                    f"job {job_id} interrupted: {exc}; once that is fixed, `spotbot resume"
                    f" {job_id}` finishes it"
                ) from exc
            finally:
                if workers is not None:
                    workers.halt()
                end_run(store, job_id)
            return RunOutcome(store.get_job(job_id), summary, shard_stats=stats)

    def _interrupted(
        self, store: TaskStore, job: Job, stats: list[dict[str, Any]] | None = None
    ) -> RunOutcome:
        job = store.update_job(job.id, status=JobStatus.INTERRUPTED)
        return RunOutcome(job, None, interrupted=True, shard_stats=stats or [])

    def _scan(self, store: TaskStore, job: Job) -> _Workers | None:
        """List the source into tasks. Once the tasks written so far give every worker its
        share, the workers start (loading the bot, then tagging) while the listing goes on:
        the workers started, if any."""
        scanned = 0
        workers: _Workers | None = None

        def on_page(n: int) -> None:
            nonlocal scanned, workers
            scanned += n
            if self._stop.is_set():
                raise _ScanStopped
            if workers is None and n:
                work = store.shards_with_work(job.id)
                enough = worker_count(self.workers, sum(work.values()), self._batch_size(job))
                if work and enough == self.workers:
                    begin_run(store, job.id, default_workers())
                    workers = self._start_workers(store, job, scanning=True)
            self._report(Progress("scan", {}, scanned))

        try:
            scan_job(
                store, job, open_source(job.source), on_page=on_page, write_batch=SCAN_WRITE_BATCH
            )
        except _ScanStopped:
            pass
        except BaseException:
            if workers is not None:
                workers.halt()
            raise
        return workers

    def _start_workers(self, store: TaskStore, job: Job, scanning: bool = False) -> _Workers | None:
        """Start the worker processes for the job's tasks (None if it has none to do)."""
        work = store.shards_with_work(job.id)
        if not work:
            return None
        procs = worker_count(self.workers, sum(work.values()), self._batch_size(job))
        # Each worker starts in a shard of its own (the fullest first) and takes over the
        # others' tasks once its own is done: no worker idles while there is work to claim.
        homes = sorted(work, key=lambda shard: (-work[shard], shard))
        threads = max(1, default_workers() // procs)
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=procs, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )
        with _children_ignore_ctrl_c():
            futures: dict[Future[dict[str, Any]], int] = {
                pool.submit(
                    run_shard,
                    str(self.home.root),
                    job.id,
                    homes[slot % len(homes)],
                    threads,
                    self.config,
                    slot,
                    scanning,
                ): slot
                for slot in range(procs)
            }
        return _Workers(pool, futures)

    def _await_workers(self, store: TaskStore, job: Job, workers: _Workers) -> list[dict[str, Any]]:
        """Wait for the workers to finish (asking them to stop once the run is stopped)."""
        results: list[dict[str, Any]] = []
        errors: list[str] = []
        faults: list[EnvironmentFault] = []
        futures = workers.futures
        while futures:
            done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                futures.pop(fut)
                try:
                    results.append(fut.result())
                except EnvironmentFault as exc:
                    faults.append(exc)
                    self._stop.set()
                except ModelError as exc:
                    errors.append(str(exc))
                    self._stop.set()
                except BrokenProcessPool as exc:
                    # A worker told to stop before it could take the signal (still starting)
                    # dies of it: the run was stopped, nothing failed.
                    if not workers.signalled:
                        errors.append(f"worker failed: {type(exc).__name__}: {exc}")
                    self._stop.set()
                except Exception as exc:
                    errors.append(f"worker failed: {type(exc).__name__}: {exc}")
                    self._stop.set()
            if self._stop.is_set():
                workers.signal()
            self._report(Progress("work", job_counts(store, job.id)))
        workers.halt()
        if faults:
            raise faults[0]
        if errors:
            store.update_job(job.id, status=JobStatus.FAILED, error=errors[0], finished_at=utcnow())
            raise JobFailedError(errors[0])
        return results

    def _batch_size(self, job: Job) -> int:
        if self.config.batch_size:
            return self.config.batch_size
        try:
            return max(1, int(job_bot_class(job).batch_size))
        except SpotbotError:  # the worker will say what is wrong with the bot
            return 1

    def _report(self, progress: Progress) -> None:
        if self.on_progress:
            self.on_progress(progress)


@contextlib.contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside begin with Ctrl-C ignored (an ignored signal stays ignored
    across exec), until their initializer installs the stop handler: a Ctrl-C while one is
    still starting up must not print a KeyboardInterrupt traceback from its bootstrap. The
    runner's own stop reaches them as SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


@dataclass
class _Workers:
    """The worker processes of a run and what each is doing."""

    pool: ProcessPoolExecutor
    futures: dict[Future[dict[str, Any]], int]
    signalled: bool = False
    closed: bool = False

    def signal(self) -> None:
        """Ask every worker to stop after its batch in flight (once)."""
        if self.signalled:
            return
        self.signalled = True
        for proc in list(getattr(self.pool, "_processes", {}).values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        for fut in self.futures:
            fut.cancel()

    def halt(self) -> None:
        """Stop the workers still running, wait for them, and leave no process behind."""
        if self.closed:
            return
        self.closed = True
        if any(not fut.done() for fut in self.futures):
            self.signal()
        self.pool.shutdown(wait=True)
        _stop_resource_tracker()


#: A worker loads the model once and should have at least this many batches to tag, or the
#: load costs more than the share of work it takes over: small jobs start fewer workers.
MIN_BATCHES_PER_WORKER = 4


def worker_count(workers: int, tasks: int, batch_size: int) -> int:
    """How many worker processes a job with `tasks` left gets: at most `workers`, and no more
    than have MIN_BATCHES_PER_WORKER batches each (a one-image job starts one)."""
    per_worker = MIN_BATCHES_PER_WORKER * max(1, batch_size)
    return max(1, min(workers, -(-tasks // per_worker)))


def _stop_resource_tracker() -> None:
    """End (and reap) the helper process that spawn-started pools leave running.

    Left alone it outlives the pool and, once this process exits, becomes a zombie wherever
    no init reaps orphans (containers). multiprocessing starts it again if a pool needs it.
    """
    with contextlib.suppress(AttributeError, OSError, ChildProcessError):
        resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


class _ScanStopped(Exception):
    pass


class JobFailedError(SpotbotError):
    """The job could not run to the end (its model would not load, a worker crashed...)."""


class JobInterruptedError(SpotbotError):
    """The environment stopped the job (a full disk...): it is INTERRUPTED, and resumable."""


__all__ = [
    "Home",
    "JobFailedError",
    "JobInterruptedError",
    "LocalRunner",
    "Progress",
    "RunOutcome",
    "UsageError",
    "default_home",
    "default_workers",
]
