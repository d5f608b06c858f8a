"""The SQLite TaskStore: one file, WAL, batched transactions, FTS5 search over results."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from spotbot.core.errors import EnvironmentFault, JobNotFoundError, SpotbotError, StoreError
from spotbot.core.records import Job, JobStatus, Result, Task, TaskStatus, utcnow
from spotbot.core.store import (
    DEFAULT_MAX_ATTEMPTS,
    SearchHit,
    TaskStore,
    empty_counts,
)
from spotbot.core.wal_check import check_wal

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    bot TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    key TEXT NOT NULL,
    shard INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    size INTEGER,
    worker TEXT,
    error TEXT,
    result TEXT,
    updated_at TEXT NOT NULL,
    fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (job_id, status);
CREATE VIRTUAL TABLE IF NOT EXISTS results_fts USING fts5 (
    labels, text, key, tokenize = 'unicode61 remove_diacritics 2'
);
"""

# CJK text has no spaces between words, and unicode61 would index a whole line as one token.
# Indexing each CJK character as its own token and querying a run of them as a phrase gives
# substring search for Chinese of any length (including the common two-character words).
_CJK = re.compile(
    r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\u3000-\u303f\uff00-\uffef])"
)
_WORD = re.compile(r"\w+", re.UNICODE)
_PAGE = 500  # rows per executemany inside one transaction


def _is_environmental(exc: sqlite3.Error) -> bool:
    """A full disk or an I/O error under the store: the environment's fault."""
    text = str(exc).lower()
    return any(s in text for s in ("disk is full", "disk i/o error", "readonly database"))


def damaged_message(path: Path, exc: Exception) -> str:
    detail = " ".join(str(exc).split())[:200]
    return (
        f"the task store {path} is damaged ({detail}): move it aside and run"
        " `spotbot doctor`, or start over with a new --home"
    )


def cjk_tokens(text: str) -> str:
    return text if text.isascii() else _CJK.sub(r" \1 ", text)


def fts_query(query: str) -> str:
    """Turn user text into a safe FTS5 query: every word must match, CJK runs as phrases."""
    terms = []
    for word in _WORD.findall(query):
        spaced = cjk_tokens(word).split()
        terms.append('"' + " ".join(s.replace('"', "") for s in spaced) + '"')
    return " AND ".join(terms)


class SqliteTaskStore(TaskStore):
    """A TaskStore in one SQLite file, safe to share between the processes of a local run.

    WAL mode lets readers (the progress bar, `spotbot status`) run beside one writer, and a
    write acknowledged by COMMIT survives `kill -9` of any process at any moment. With
    synchronous=NORMAL the last commits could roll back on power loss (never corrupt);
    pass synchronous="FULL" when that matters more than speed.
    """

    def __init__(
        self,
        path: str | Path,
        synchronous: str = "NORMAL",
        timeout: float = 60.0,
        check: bool = True,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._timeout = timeout
        self._writers = _writer_lock(self.path)
        self._rowids: dict[str, int] = {}  # task id -> row, for the tasks this store claimed
        if self.path.exists() and self.path.stat().st_size == 0:
            # SQLite would take an empty file for a new store, and every job it held would
            # vanish without a word: say so (the new store starts empty).
            log.warning(
                "the task store %s is empty (0 bytes): the jobs it held are gone;"
                " a new store starts here (see `spotbot doctor`)",
                self.path,
            )
        if check and (damage := check_wal(self.path)):
            raise StoreError(damage.message(self.path))
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            if check:
                self._quick_check()
            with self._tx():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(damaged_message(self.path, exc)) from exc

    def _migrate(self) -> None:
        """Bring a store made by an older spotbot up to this schema (inside the open's tx)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        if "fingerprint" not in columns:
            self._db.execute("ALTER TABLE tasks ADD COLUMN fingerprint TEXT")
        # Each status change of a task rewrites every index entry that holds its status. Claims
        # look up PENDING tasks only (a partial index that a task leaves once, at its claim) and
        # only-new jobs look assets up by key (whatever the status): two entries fewer to move
        # per change than the (job_id, shard, status) and (key, status) indexes of before.
        self._db.execute("DROP INDEX IF EXISTS tasks_claim")
        self._db.execute("DROP INDEX IF EXISTS tasks_reuse")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS tasks_pending ON tasks (job_id, shard)"
            " WHERE status = 'PENDING'"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS tasks_key ON tasks (key)")
        # A job's finished tasks are read in key order (results.jsonl, the report, export):
        # a walk along this index, where a sort of the job's rows per page was quadratic.
        self._db.execute("CREATE INDEX IF NOT EXISTS tasks_job_key ON tasks (job_id, key)")

    def _fault(self, exc: sqlite3.Error) -> SpotbotError:
        if _is_environmental(exc):
            return EnvironmentFault(f"cannot write the task store {self.path}: {exc}")
        return StoreError(f"task store {self.path}: {exc}")

    def _quick_check(self) -> None:
        """Refuse a damaged file at once, with one line, not a traceback at the first query."""
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(problems))

    def integrity(self) -> list[str]:
        """The full integrity check's findings (["ok"] for a sound store): `spotbot doctor`."""
        with self._lock:
            return [row[0] for row in self._db.execute("PRAGMA integrity_check(20)")]

    # -- plumbing -------------------------------------------------------------------------
    class _Tx:
        def __init__(self, store: SqliteTaskStore):
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.store._acquire_writers()
                self.store._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._release_writers()
                self.store._lock.release()
                raise
            return self.store._db

        def __exit__(self, exc_type: object, exc: object, *rest: object) -> None:
            try:
                self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
            except sqlite3.OperationalError as failed:
                with contextlib.suppress(sqlite3.Error):
                    self.store._db.execute("ROLLBACK")
                raise self.store._fault(failed) from failed
            finally:
                self.store._release_writers()
                self.store._lock.release()
            if isinstance(exc, sqlite3.OperationalError) and _is_environmental(exc):
                raise self.store._fault(exc) from exc

    def _tx(self) -> SqliteTaskStore._Tx:
        return SqliteTaskStore._Tx(self)

    # Writers queue on a lock file before SQLite's own write lock: a process waiting for
    # SQLite's lock sleeps in steps of up to 100 ms, and two busy workers' short transactions
    # then cost more waiting than working; waiting here wakes the moment the holder is done.
    def _acquire_writers(self) -> None:
        if self._writers is None:
            return
        try:
            fcntl.flock(self._writers, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                fcntl.flock(self._writers, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the task store {self.path} stayed locked for {self._timeout:g} s"
                    ) from None
                time.sleep(0.0002)

    def _release_writers(self) -> None:
        if self._writers is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._writers, fcntl.LOCK_UN)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._writers is not None:
                with contextlib.suppress(OSError):
                    os.close(self._writers)
                self._writers = None

    def integrity_check(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])

    # -- jobs ------------------------------------------------------------------------------
    def create_job(self, job: Job) -> Job:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (id, bot, status, created_at, doc) VALUES (?, ?, ?, ?, ?)",
                (job.id, job.bot, str(job.status), job.created_at, json.dumps(job.to_dict())),
            )
        return self.get_job(job.id)

    def get_job(self, job_id: str) -> Job:
        rows = self._query("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFoundError(f"no job {job_id!r} in {self.path}")
        return Job.from_dict(json.loads(rows[0][0]))

    def update_job(self, job_id: str, unless_final: bool = False, **fields: Any) -> Job:
        with self._tx() as db:
            row = db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFoundError(f"no job {job_id!r} in {self.path}")
            doc = json.loads(row[0])
            if unless_final and JobStatus(doc["status"]).is_final:
                return Job.from_dict(doc)
            for name, value in fields.items():
                if name not in Job.__dataclass_fields__:
                    raise StoreError(f"job has no field {name!r}")
                doc[name] = str(value) if name == "status" else value
            db.execute(
                "UPDATE jobs SET status = ?, doc = ? WHERE id = ?",
                (doc["status"], json.dumps(doc), job_id),
            )
        return Job.from_dict(doc)

    def list_jobs(self, limit: int = 100) -> list[Job]:
        rows = self._query(
            "SELECT doc FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
        )
        return [Job.from_dict(json.loads(r[0])) for r in rows]

    # -- tasks -----------------------------------------------------------------------------
    def put_tasks(self, tasks: Sequence[Task]) -> int:
        now = utcnow()
        rows = [
            (
                t.id,
                t.job_id,
                t.key,
                t.shard,
                str(t.status),
                t.attempts,
                t.size,
                t.error,
                now,
                t.fingerprint,
            )
            for t in tasks
        ]
        with self._tx() as db:
            before = db.total_changes
            for i in range(0, len(rows), _PAGE):
                db.executemany(
                    "INSERT OR IGNORE INTO tasks (id, job_id, key, shard, status, attempts, size,"
                    " error, updated_at, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows[i : i + _PAGE],
                )
            return db.total_changes - before

    def claim_tasks(self, job_id: str, shard: int, worker: str, limit: int) -> list[Task]:
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit": it would claim the shard
            return []
        with self._tx() as db:
            rows = db.execute(
                "UPDATE tasks SET status = 'RUNNING', worker = ?,"
                " updated_at = ? WHERE rowid IN (SELECT rowid FROM tasks WHERE job_id = ?"
                " AND shard = ? AND status = 'PENDING' ORDER BY rowid LIMIT ?)"
                " RETURNING key, shard, size, attempts, rowid",
                (worker, utcnow(), job_id, shard, limit),
            ).fetchall()
        return self._claimed(job_id, worker, rows)

    def steal_tasks(self, job_id: str, worker: str, limit: int) -> list[Task]:
        if limit <= 0:
            return []
        with self._tx() as db:  # one write transaction: the choice and the claim are atomic
            victim = db.execute(
                "SELECT shard FROM tasks WHERE job_id = ? AND status = 'PENDING'"
                " GROUP BY shard ORDER BY count(*) DESC, shard LIMIT 1",
                (job_id,),
            ).fetchone()
            if victim is None:
                return []
            rows = db.execute(
                "UPDATE tasks SET status = 'RUNNING', worker = ?,"
                " updated_at = ? WHERE rowid IN (SELECT rowid FROM tasks WHERE job_id = ?"
                " AND shard = ? AND status = 'PENDING' ORDER BY rowid DESC LIMIT ?)"
                " RETURNING key, shard, size, attempts, rowid",
                (worker, utcnow(), job_id, victim[0], limit),
            ).fetchall()
        return self._claimed(job_id, worker, rows)

    def _claimed(self, job_id: str, worker: str, rows: Sequence[Any]) -> list[Task]:
        tasks = []
        for key, shard, size, attempts, rowid in rows:
            task = Task(
                job_id=job_id,
                key=key,
                shard=shard,
                size=size,
                status=TaskStatus.RUNNING,
                attempts=attempts,
                worker=worker,
            )
            self._rowids[task.id] = rowid
            tasks.append(task)
        tasks.sort(key=lambda t: t.key)
        return tasks

    def _known_rowids(self, task_ids: Sequence[str]) -> list[int] | None:
        """The rows of tasks this store claimed (None unless every one is known): a write by
        rowid skips a lookup per task in the index of ids, whose order is random."""
        rowids = self._rowids
        try:
            return [rowids[tid] for tid in task_ids]
        except KeyError:
            return None

    def _forget(self, task_ids: Sequence[str]) -> None:
        for tid in task_ids:
            self._rowids.pop(tid, None)

    def begin_attempt(self, job_id: str, task_ids: Sequence[str]) -> None:
        with self._tx() as db:
            self._begin(db, job_id, task_ids)

    def _begin(self, db: sqlite3.Connection, job_id: str, task_ids: Sequence[str]) -> None:
        if not task_ids:
            return
        rowids = self._known_rowids(task_ids)
        if rowids is not None:
            # Row ids are integers this store read itself: inlined, one statement for all.
            db.execute(
                "UPDATE tasks SET attempts = attempts + 1 WHERE rowid IN"
                f" ({','.join(map(str, rowids))}) AND job_id = ? AND status = 'RUNNING'",
                (job_id,),
            )
            return
        db.executemany(
            "UPDATE tasks SET attempts = attempts + 1 WHERE id = ? AND job_id = ?"
            " AND status = 'RUNNING'",
            [(tid, job_id) for tid in task_ids],
        )

    def release_tasks(self, job_id: str, task_ids: Sequence[str]) -> int:
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "UPDATE tasks SET status = 'PENDING', worker = NULL"
                " WHERE id = ? AND job_id = ? AND status = 'RUNNING'",
                [(tid, job_id) for tid in task_ids],
            )
            released = db.total_changes - before
        self._forget(task_ids)
        return released

    def complete_tasks(self, results: Sequence[Result]) -> None:
        self.complete_and_begin(results, "", ())

    def complete_and_begin(
        self, results: Sequence[Result], job_id: str, next_ids: Sequence[str]
    ) -> None:
        if not results and not next_ids:
            return
        now = utcnow()
        # Everything that needs no lock is computed before the transaction: ids, the stored
        # JSON and the search tokens (the write lock is held only for the writes).
        ids = [r.task_id for r in results]
        records = [r.to_json() for r in results]
        tokens = [
            (cjk_tokens(" ".join(r.labels)), cjk_tokens(r.text), cjk_tokens(r.key))
            if r.status == TaskStatus.DONE
            else None
            for r in results
        ]
        known = self._known_rowids(ids)
        with self._tx() as db:
            if next_ids:
                self._begin(db, job_id, next_ids)
            rows: dict[str, tuple[int, bool]] = {}
            # By row id where this store claimed the tasks, else by task id; the id read back
            # is checked either way, and whether the task holds a result already (a retry).
            lookups: list[tuple[str, Sequence[Any]]] = [("id", ids)]
            if known is not None:
                lookups.insert(0, ("rowid", known))
            for column, keys in lookups:
                if column == "id":
                    keys = [tid for tid in keys if tid not in rows]
                for i in range(0, len(keys), _PAGE):
                    chunk = keys[i : i + _PAGE]
                    marks = ",".join("?" * len(chunk))
                    for tid, rowid, indexed in db.execute(
                        f"SELECT id, rowid, result IS NOT NULL FROM tasks"
                        f" WHERE {column} IN ({marks})",
                        chunk,
                    ):
                        rows[tid] = (rowid, bool(indexed))
            missing = [r.key for r, tid in zip(results, ids, strict=True) if tid not in rows]
            if missing:
                raise StoreError(f"no task for {missing[0]!r} in job {results[0].job_id}")
            db.executemany(
                "UPDATE tasks SET status = ?, error = ?, result = ?, worker = NULL, updated_at = ?"
                " WHERE rowid = ?",
                [
                    (r.status.value, r.error, record, now, rows[tid][0])
                    for r, tid, record in zip(results, ids, records, strict=True)
                ],
            )
            # Only a task that had a result before (a retry, a requeue) can be in the index.
            db.executemany(
                "DELETE FROM results_fts WHERE rowid = ?",
                [(rows[tid][0],) for tid in ids if rows[tid][1]],
            )
            db.executemany(
                "INSERT INTO results_fts (rowid, labels, text, key) VALUES (?, ?, ?, ?)",
                [
                    (rows[tid][0], *tok)
                    for tid, tok in zip(ids, tokens, strict=True)
                    if tok is not None
                ],
            )
        self._forget(ids)

    def iter_finished_lines(
        self, job_id: str, page_size: int = 1000
    ) -> Iterator[tuple[bytes, str | None]]:
        # The stored record is the line itself: no parsing and dumping again per asset.
        job = self.get_job(job_id)
        for row in self._finished_rows(job_id, page_size):
            yield (row[3].encode() if row[3] else _unstored(job, *row).to_line()), row[4]

    def reclaim_running(
        self,
        job_id: str,
        shard: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        owner: str | None = None,
    ) -> int:
        where = "job_id = ? AND status = 'RUNNING'"
        params: list[Any] = [job_id]
        if shard is not None:
            where += " AND shard = ?"
            params.append(shard)
        if owner is not None:
            where += " AND substr(worker, 1, ?) = ?"
            params.extend([len(owner), owner])
        now = utcnow()
        with self._tx() as db:
            before = db.total_changes
            db.execute(
                "UPDATE tasks SET status = 'FAILED', worker = NULL, updated_at = ?, error ="
                " 'worker died ' || attempts || ' times while tagging this asset'"
                f" WHERE {where} AND attempts >= ?",
                [now, *params, max_attempts],
            )
            db.execute(
                f"UPDATE tasks SET status = 'PENDING', worker = NULL, updated_at = ? WHERE {where}",
                [now, *params],
            )
            return db.total_changes - before

    def requeue_failed(self, job_id: str) -> int:
        with self._tx() as db:
            before = db.total_changes
            db.execute(
                "UPDATE tasks SET status = 'PENDING', attempts = 0, error = NULL, result = NULL,"
                " updated_at = ? WHERE job_id = ? AND status = 'FAILED'",
                (utcnow(), job_id),
            )
            return db.total_changes - before

    def count_tasks(self, job_id: str) -> dict[TaskStatus, int]:
        counts = empty_counts()
        for status, n in self._query(
            "SELECT status, count(*) FROM tasks WHERE job_id = ? GROUP BY status", (job_id,)
        ):
            counts[TaskStatus(status)] = n
        return counts

    def shards_with_work(self, job_id: str) -> dict[int, int]:
        rows = self._query(
            "SELECT shard, count(*) FROM tasks WHERE job_id = ? AND status IN (?, ?)"
            " GROUP BY shard",
            (job_id, str(TaskStatus.PENDING), str(TaskStatus.RUNNING)),
        )
        return {int(shard): int(n) for shard, n in rows}

    def find_reusable(
        self, bot: str, model_version: str | None, tasks: Sequence[Task], exclude_job: str
    ) -> dict[str, Result]:
        wanted = {t.key: (t.size, t.fingerprint) for t in tasks if t.fingerprint}
        found: dict[str, Result] = {}
        keys = list(wanted)
        for i in range(0, len(keys), _PAGE):
            chunk = keys[i : i + _PAGE]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT t.key, t.job_id, t.size, t.fingerprint, t.result FROM tasks t"
                " JOIN jobs j ON j.id = t.job_id"
                f" WHERE t.key IN ({marks}) AND t.status = 'DONE' AND t.job_id != ?"
                " AND t.result IS NOT NULL AND j.bot = ?"
                " AND json_extract(j.doc, '$.model_version') IS ?"
                " ORDER BY t.updated_at",
                [*chunk, exclude_job, bot, model_version],
            )
            for key, job_id, size, fingerprint, result in rows:  # oldest first: newest wins
                if wanted[key] == (size, fingerprint):
                    found[key] = Result.from_record(job_id, json.loads(result))
        return found

    def iter_results(self, job_id: str, page_size: int = 1000) -> Iterator[Result]:
        job = self.get_job(job_id)
        for row in self._finished_rows(job_id, page_size):
            if not row[3]:
                yield _unstored(job, *row)
                continue
            found = Result.from_record(job_id, json.loads(row[3]))
            found.finished_at = row[4]
            yield found

    def _finished_rows(self, job_id: str, page_size: int) -> Iterator[sqlite3.Row]:
        """(key, status, error, stored line, updated_at) of finished tasks, by key."""
        last = ""
        while True:
            rows = self._query(
                "SELECT key, status, error, result, updated_at FROM tasks WHERE job_id = ?"
                " AND key > ?"
                " AND status IN ('DONE', 'FAILED', 'SKIPPED') ORDER BY key LIMIT ?",
                (job_id, last, page_size),
            )
            yield from rows
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def search(
        self,
        query: str,
        bot: str | None = None,
        job_id: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[SearchHit]:
        match = fts_query(query)
        if not match or limit <= 0:
            return []
        sql = (
            "SELECT t.job_id, t.key, t.result, bm25(results_fts) AS rank FROM results_fts"
            " JOIN tasks t ON t.rowid = results_fts.rowid JOIN jobs j ON j.id = t.job_id"
            " WHERE results_fts MATCH ?"
        )
        params: list[Any] = [match]
        if bot:
            sql += " AND j.bot = ?"
            params.append(bot)
        if job_id:
            sql += " AND t.job_id = ?"
            params.append(job_id)
        sql += " ORDER BY rank, t.job_id, t.key LIMIT ? OFFSET ?"
        params += [limit, max(0, offset)]
        hits = []
        for job, key, result, rank in self._query(sql, params):
            res = Result.from_record(job, json.loads(result))
            hits.append(
                SearchHit(
                    job_id=job,
                    key=key,
                    bot=res.bot,
                    labels=res.labels,
                    text=res.text,
                    score=float(-rank),
                    model_version=res.model_version,
                    tags=res.tags,
                )
            )
        return hits


# -- recovery -----------------------------------------------------------------------------------
_TABLES = {
    "jobs": "id, bot, status, created_at, doc",
    "tasks": "id, job_id, key, shard, status, attempts, size, worker, error, result, updated_at",
}


def _unstored(
    job: Job, key: str, status: str, error: str | None, _: object, finished_at: str
) -> Result:
    """The Result of a finished task with no stored line (SKIPPED, failed before tagging)."""
    return Result(
        job_id=job.id,
        key=key,
        bot=job.bot,
        model_version=job.model_version,
        status=TaskStatus(status),
        error=error,
        finished_at=finished_at,
    )


def _writer_lock(path: Path) -> int | None:
    """The lock file writers of this store queue on (None where it cannot be made)."""
    try:
        return os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        return None


def _readable_rows(db: sqlite3.Connection, table: str, columns: str) -> Iterator[tuple[Any, ...]]:
    """Every row of `table` that can still be read: whole, else rowid range by range, else row
    by row (a damaged page loses only the rows on it)."""
    try:
        yield from db.execute(f"SELECT {columns} FROM {table}").fetchall()
        return
    except sqlite3.DatabaseError:
        pass
    try:
        (high,) = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()
    except sqlite3.DatabaseError:
        return
    step = 1000
    for start in range(0, int(high or 0) + 1, step):
        query = f"SELECT {columns} FROM {table} WHERE rowid >= ? AND rowid < ?"
        try:
            yield from db.execute(query, (start, start + step)).fetchall()
        except sqlite3.DatabaseError:
            for rowid in range(start, start + step):
                try:
                    yield from db.execute(
                        f"SELECT {columns} FROM {table} WHERE rowid = ?", (rowid,)
                    ).fetchall()
                except sqlite3.DatabaseError:
                    continue


def salvage(damaged: Path, target: Path) -> dict[str, int]:
    """Copy what can be read of a damaged store into a new one at `target` (which must not
    exist), rebuild its search index; the count of jobs and tasks saved."""
    if target.exists():
        raise StoreError(f"{target} exists: salvage writes a new store")
    source = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    saved: dict[str, int] = {}
    try:
        store = SqliteTaskStore(target)
        try:
            with store._tx() as db:
                for table, columns in _TABLES.items():
                    marks = ",".join("?" * len(columns.split(",")))
                    rows = list(_readable_rows(source, table, columns))
                    db.executemany(
                        f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", rows
                    )
                    saved[table] = len(rows)
                indexed = db.execute(
                    "SELECT rowid, job_id, result FROM tasks WHERE status = ? AND result IS NOT NULL",
                    (str(TaskStatus.DONE),),
                ).fetchall()
                db.executemany(
                    "INSERT INTO results_fts (rowid, labels, text, key) VALUES (?, ?, ?, ?)",
                    [
                        (
                            rowid,
                            cjk_tokens(" ".join(r.labels)),
                            cjk_tokens(r.text),
                            cjk_tokens(r.key),
                        )
                        for rowid, job_id, doc in indexed
                        for r in [Result.from_record(job_id, json.loads(doc))]
                    ],
                )
        finally:
            store.close()
    finally:
        source.close()
    return saved
