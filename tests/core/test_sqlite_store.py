"""The SQLite store under kill -9: never corrupt, and every write it acknowledged is there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spotbot.core.records import TaskStatus
from spotbot.core.sqlite_store import SqliteTaskStore
from tests.conftest import base_env

WRITER = textwrap.dedent("""
    import sys
    from spotbot.core.records import Job, Result, Task, TaskStatus
    from spotbot.core.sqlite_store import SqliteTaskStore
    store = SqliteTaskStore(sys.argv[1])
    job = store.create_job(Job(id="job-k", bot="words", source="s", output="o"))
    batch = 0
    while True:
        keys = [f"b{batch:05d}-{i:03d}" for i in range(200)]
        store.put_tasks([Task(job_id=job.id, key=k) for k in keys])
        claimed = store.claim_tasks(job.id, 0, "w", 200)
        store.complete_tasks([Result(job.id, t.key, "words", "1", TaskStatus.DONE,
                                     tags=[{"label": "出口", "score": 1.0}]) for t in claimed])
        print(batch, flush=True)  # acknowledged: every task of this batch is DONE
        batch += 1
""")


@pytest.mark.integration
@pytest.mark.parametrize("delay", [0.3, 0.7, 1.3])
def test_kill_9_never_loses_an_acknowledged_write(tmp_path: Path, delay: float) -> None:
    db = tmp_path / "store.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], env=base_env(), stdout=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    acked = [int(line) for line in proc.stdout.read().split()]
    proc.wait()
    assert acked, "the writer acknowledged nothing before the kill"

    store = SqliteTaskStore(db)
    assert store.integrity_check() == "ok"
    counts = store.count_tasks("job-k")
    # every acknowledged batch is fully DONE; at most the batch in flight is not
    assert counts[TaskStatus.DONE] >= 200 * len(acked)
    assert counts[TaskStatus.DONE] % 200 == 0
    assert counts[TaskStatus.DONE] + counts[TaskStatus.RUNNING] + counts[
        TaskStatus.PENDING
    ] <= 200 * (len(acked) + 1)
    assert len(store.search("出口", limit=1_000_000)) == counts[TaskStatus.DONE]
