"""Never pay twice: an only-new job reuses the DONE results of unchanged assets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from spotbot.core.artifacts import ModelRegistry
from spotbot.core.records import REUSED_FROM, Result, TaskStatus
from spotbot.core.sinks import LocalSink
from spotbot.core.sources import LocalSource
from spotbot.core.sqlite_store import SqliteTaskStore
from spotbot.core.steps import finalize_job, init_job, scan_job
from spotbot.entry.local_runner import LocalRunner
from tests.fakebots import WordsBot

WORDS = "tests.fakebots:WordsBot"


def _texts(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"t{i:03d}.txt").write_text(f"word{i} common")
    return folder


def _job(runner: LocalRunner, source: Path, out: Path, only_new: bool) -> str:
    with runner.home.store() as store:
        job = init_job(
            store,
            runner.home.registry(),
            bot=WORDS,
            source=LocalSource(source),
            sink=LocalSink(out),
            shards=2,
            only_new=only_new,
        )
    return job.id


def _summary(out: Path, job_id: str) -> dict:
    return json.loads((out / job_id / "summary.json").read_text())


def test_a_rerun_with_only_new_reuses_every_unchanged_result_and_runs_no_worker(
    tmp_path: Path,
) -> None:
    # GIVEN a finished job over 12 texts
    source, out = _texts(tmp_path / "src", 12), tmp_path / "out"
    runner = LocalRunner(tmp_path / "home", workers=2)
    first = _job(runner, source, out, only_new=False)
    assert runner.run(first).summary["counts"]["done"] == 12
    # WHEN the same source is tagged again with only-new
    second = _job(runner, source, out, only_new=True)
    outcome = runner.run(second)
    # THEN no worker started, all 12 results were carried over and marked
    assert outcome.shard_stats == []
    summary = _summary(out, second)
    assert summary["counts"]["done"] == 12 and summary["reused"] == 12
    lines = [json.loads(x) for x in (out / second / "results.jsonl").read_text().splitlines()]
    assert {line[REUSED_FROM] for line in lines} == {first}
    assert lines[0]["tags"] and lines[0]["model_version"] == "words-1"


def test_only_changed_and_new_assets_are_tagged_again(tmp_path: Path) -> None:
    source, out = _texts(tmp_path / "src", 10), tmp_path / "out"
    runner = LocalRunner(tmp_path / "home", workers=1)
    first = _job(runner, source, out, only_new=False)
    runner.run(first)
    # GIVEN two assets changed (content and mtime) and one added
    for name in ("t001.txt", "t002.txt"):
        path = source / name
        path.write_text("changed words here")
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    (source / "t999.txt").write_text("brand new")
    second = _job(runner, source, out, only_new=True)
    outcome = runner.run(second)
    # THEN exactly those three went to the bot
    assert sum(s["done"] for s in outcome.shard_stats) == 3
    summary = _summary(out, second)
    assert summary["counts"]["done"] == 11 and summary["reused"] == 8
    with runner.home.store() as store:
        fresh = {r.key for r in store.iter_results(second) if r.reused_from is None}
    assert fresh == {"t001.txt", "t002.txt", "t999.txt"}


def test_a_job_without_only_new_tags_everything_again(tmp_path: Path) -> None:
    source, out = _texts(tmp_path / "src", 5), tmp_path / "out"
    runner = LocalRunner(tmp_path / "home", workers=1)
    runner.run(_job(runner, source, out, only_new=False))
    second = _job(runner, source, out, only_new=False)
    outcome = runner.run(second)
    assert sum(s["done"] for s in outcome.shard_stats) == 5
    assert _summary(out, second)["reused"] == 0


def test_scan_of_an_only_new_job_is_idempotent(tmp_path: Path) -> None:
    # GIVEN an earlier DONE result for the only asset
    source = _texts(tmp_path / "src", 1)
    store = SqliteTaskStore(tmp_path / "s.sqlite3")
    registry = ModelRegistry(tmp_path / "models")
    sink = LocalSink(tmp_path / "out")
    old = init_job(store, registry, bot=WORDS, source=LocalSource(source), sink=sink)
    scan_job(store, old, LocalSource(source), bot_cls=WordsBot)
    store.complete_tasks(
        [
            Result(
                old.id,
                "t000.txt",
                "words",
                "words-1",
                TaskStatus.DONE,
                [{"label": "w", "score": 1}],
            )
        ]
    )
    new = init_job(store, registry, bot=WORDS, source=LocalSource(source), sink=sink, only_new=True)
    # WHEN its scan runs twice (a retried Lambda)
    for _ in range(2):
        store.update_job(new.id, scan_token=None, scan_complete=False)
        scan_job(store, store.get_job(new.id), LocalSource(source), bot_cls=WordsBot)
    # THEN one DONE, reused task, and the job finalizes with it
    counts = store.count_tasks(new.id)
    assert counts[TaskStatus.DONE] == 1 and counts[TaskStatus.PENDING] == 0
    summary = finalize_job(store, sink, store.get_job(new.id))
    assert summary["reused"] == 1
