"""What keeps the per-asset cost of a job low, without changing what it produces: the store's
indexes (and stores made before them), writes by row id, the finalize pass that feeds the
report, scan writes of several pages, and workers that start while the scan goes on."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from spotbot.core.artifacts import ModelRef
from spotbot.core.records import Job, Result, Task, TaskStatus
from spotbot.core.report import render_report, report_collector
from spotbot.core.sinks import LocalSink
from spotbot.core.sources import LocalSource
from spotbot.core.sqlite_store import SqliteTaskStore
from spotbot.core.steps import scan_job
from spotbot.core.worker import ShardWorker, WorkerConfig
from tests.fakebots import WordsBot


def _job(store: SqliteTaskStore, job_id: str = "job-1") -> Job:
    return store.create_job(Job(id=job_id, bot="words", source="/in", output="/out"))


def _indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def _plan(store: SqliteTaskStore, sql: str) -> str:
    return " | ".join(row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))


def test_a_store_made_with_the_earlier_indexes_is_migrated_and_keeps_its_tasks(
    tmp_path: Path,
) -> None:
    # GIVEN a store whose tasks are indexed as earlier versions did
    db = tmp_path / "store.sqlite3"
    with SqliteTaskStore(db) as store:
        _job(store)
        store.put_tasks([Task(job_id="job-1", key=f"k{i}.txt") for i in range(10)])
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "DROP INDEX tasks_pending; DROP INDEX tasks_key; DROP INDEX tasks_job_key;"
            "CREATE INDEX tasks_claim ON tasks (job_id, shard, status);"
            "CREATE INDEX tasks_reuse ON tasks (key, status);"
        )
    # WHEN this version opens it
    with SqliteTaskStore(db) as store:
        claimed = store.claim_tasks("job-1", 0, "w", 100)
    # THEN the old indexes are gone, the new ones there, and the tasks claimable
    assert _indexes(db) == {"tasks_status", "tasks_pending", "tasks_key", "tasks_job_key"}
    assert len(claimed) == 10


def test_claims_and_the_finished_walk_use_indexes_without_sorting(tmp_path: Path) -> None:
    with SqliteTaskStore(tmp_path / "store.sqlite3") as store:
        claim = _plan(
            store,
            "SELECT rowid FROM tasks WHERE job_id = 'j' AND shard = 0 AND status = 'PENDING'"
            " ORDER BY rowid LIMIT 5",
        )
        finished = _plan(
            store,
            "SELECT key FROM tasks WHERE job_id = 'j' AND key > '' AND status IN"
            " ('DONE', 'FAILED', 'SKIPPED') ORDER BY key LIMIT 1000",
        )
    assert "tasks_pending" in claim
    # a sort per page of a job's finished rows made results.jsonl quadratic in the job's size
    assert "tasks_job_key" in finished and "TEMP B-TREE" not in finished


def test_results_recorded_by_row_id_or_by_task_id_are_the_same(tmp_path: Path) -> None:
    # GIVEN tasks claimed by one store (which knows their rows) and completed by another
    db = tmp_path / "store.sqlite3"
    with SqliteTaskStore(db) as store, SqliteTaskStore(db) as other:
        _job(store)
        store.put_tasks([Task(job_id="job-1", key=f"k{i}.txt") for i in range(6)])
        claimed = store.claim_tasks("job-1", 0, "w", 6)
        store.begin_attempt("job-1", [t.id for t in claimed])

        def result(task: Task) -> Result:
            return Result("job-1", task.key, "words", "1", TaskStatus.DONE, tags=[{"label": "x"}])

        store.complete_tasks([result(t) for t in claimed[:3]])
        other.complete_tasks([result(t) for t in claimed[3:]])
        # AND one completed again (a retry): its search entry is replaced, not doubled
        store.complete_tasks([result(claimed[0])])
        counts = store.count_tasks("job-1")
        hits = store.search("x", limit=100)
        attempts = {r[0] for r in store._db.execute("SELECT attempts FROM tasks")}
    assert counts[TaskStatus.DONE] == 6 and len(hits) == 6
    assert attempts == {1}


def test_the_report_from_finalize_pass_matches_the_report_from_the_store(tmp_path: Path) -> None:
    # GIVEN a job with done, failed and skipped tasks
    with SqliteTaskStore(tmp_path / "store.sqlite3") as store:
        job = _job(store)
        keys = [f"k{i:03d}.txt" for i in range(300)]
        store.put_tasks([Task(job_id=job.id, key=k) for k in keys[:-10]])
        store.put_tasks(
            [Task(job.id, k, status=TaskStatus.SKIPPED, error="not taken") for k in keys[-10:]]
        )
        claimed = store.claim_tasks(job.id, 0, "w", 1000)
        store.complete_tasks(
            [
                Result(job.id, t.key, "words", "1", TaskStatus.DONE, tags=[{"label": t.key[:2]}])
                if i % 7
                else Result(job.id, t.key, "words", "1", TaskStatus.FAILED, error="bad")
                for i, t in enumerate(claimed)
            ]
        )
        # WHEN the report is made from the records finalize streams to results.jsonl
        collector = report_collector(job, None)
        lines = []
        for line, finished_at in store.iter_finished_lines(job.id):
            lines.append(line)
            collector.add_record(json.loads(line), finished_at)
        from_pass = render_report(job, {}, collector.data())
        # THEN it is the report made from the store's results, and the lines are the file's
        from_store = render_report(job, {}, store.iter_results(job.id))
        assert from_pass == from_store
        assert lines == list(store.iter_result_lines(job.id))
        assert len(lines) == 300


def test_a_scan_writes_pages_together_and_the_first_at_once(tmp_path: Path) -> None:
    # GIVEN a folder of 2,500 files (three listing pages)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2500):
        (folder / f"a{i:04d}.txt").write_text("x")
    with SqliteTaskStore(tmp_path / "store.sqlite3") as store:
        job = store.create_job(
            Job(
                id="job-1",
                bot="words",
                source=str(folder),
                output="/out",
                shards=2,
                options={"bot_spec": "tests.fakebots:WordsBot"},
            )
        )
        seen: list[int] = []
        # WHEN it is scanned writing up to 10,000 tasks at once
        progress = scan_job(
            store,
            job,
            LocalSource(folder),
            write_batch=10_000,
            on_page=lambda n: seen.append(sum(store.count_tasks(job.id).values())),
        )
        # THEN the first page's tasks were there after the first page, all at the end
        assert seen[0] == 1000
        assert progress.complete and progress.tasks == 2500
        assert sum(store.count_tasks(job.id).values()) == 2500
        assert store.get_job(job.id).scan_complete


def _words_files(tmp_path: Path, count: int) -> Path:
    """`count` one-word files under tmp_path/in; the store's path beside them."""
    (tmp_path / "in").mkdir()
    for i in range(count):
        (tmp_path / "in" / f"a{i:02d}.txt").write_text(f"word{i}")
    return tmp_path / "store.sqlite3"


def _words_job(tmp_path: Path) -> Job:
    return Job(id="job-1", bot="words", source=str(tmp_path / "in"), output=str(tmp_path / "out"))


def _words_worker(tmp_path: Path, job: Job, store: SqliteTaskStore, **options: Any) -> ShardWorker:
    """A worker of the words bot over tmp_path/in, on its own connection `store`."""
    bot = WordsBot()
    bot.load(ModelRef(bot.name, "words-1", None, "test code"), threads=1)
    return ShardWorker(
        store=store,
        source=LocalSource(tmp_path / "in"),
        sink=LocalSink(tmp_path / "out"),
        bot=bot,
        job=job,
        shard=0,
        worker_id="w",
        **options,
    )


def test_a_worker_started_during_the_scan_waits_for_the_rest(tmp_path: Path) -> None:
    # GIVEN a job whose listing has written some tasks so far
    db = _words_files(tmp_path, 40)
    with SqliteTaskStore(db) as store:
        job = store.create_job(_words_job(tmp_path))
        store.put_tasks([Task(job_id=job.id, key=f"a{i:02d}.txt") for i in range(10)])
        worker_store = SqliteTaskStore(db)
        worker = _words_worker(
            tmp_path,
            job,
            worker_store,
            config=WorkerConfig(),
            more_coming=lambda: not worker_store.get_job(job.id).scan_complete,
        )
        # WHEN the worker runs while the rest of the listing arrives, then the scan completes
        thread = threading.Thread(target=worker.run)
        thread.start()
        store.put_tasks([Task(job_id=job.id, key=f"a{i:02d}.txt") for i in range(10, 40)])
        store.update_job(job.id, scan_complete=True)
        thread.join(timeout=60)
        worker_store.close()
        # THEN it tagged every task, the late ones included, and then left
        assert not thread.is_alive()
        assert store.count_tasks(job.id)[TaskStatus.DONE] == 40


class _StopAfterTheGroupCommit(SqliteTaskStore):
    """A store that raises the worker's stop right after the write that completed one batch
    and counted the next batch's attempt: a Spot reclaim between two batches."""

    stop: threading.Event

    def complete_and_begin(self, results, job_id, next_ids):  # type: ignore[no-untyped-def]
        super().complete_and_begin(results, job_id, next_ids)
        if next_ids:
            self.stop.set()


def test_a_stop_between_two_batches_tags_the_one_begun_and_hands_back_the_rest(
    tmp_path: Path,
) -> None:
    # GIVEN a page of 4 batches of 2 in a worker's hands
    db = _words_files(tmp_path, 8)
    with SqliteTaskStore(db) as store:
        job = store.create_job(_words_job(tmp_path))
        store.put_tasks([Task(job_id=job.id, key=f"a{i:02d}.txt") for i in range(8)])
        stop = threading.Event()
        worker_store = _StopAfterTheGroupCommit(db)
        worker_store.stop = stop
        worker = _words_worker(
            tmp_path, job, worker_store, config=WorkerConfig(batch_size=2, steal=False), stop=stop
        )
        # WHEN the stop comes right after the first batch's results and the second's attempt
        worker.run()
        worker_store.close()
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT status, attempts FROM tasks WHERE job_id = 'job-1'").fetchall()
    # THEN the begun batch was tagged too, the rest handed back untried: no asset is counted
    # as attempted without having been tagged (a retry then tags each once, attempts 1)
    done = [attempts for status, attempts in rows if status == "DONE"]
    pending = [attempts for status, attempts in rows if status == "PENDING"]
    assert len(done) == 4 and set(done) == {1}, rows
    assert len(pending) == 4 and set(pending) == {0}, rows
