"""The local runner starts only the workers a job needs (each loads the model once), and its
workers share the work: none idles while another still has a queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotbot.core.records import shard_of
from spotbot.entry.local_runner import LocalRunner, worker_count

pytestmark = pytest.mark.integration
BOT = "tests.fakebots:WordsBot"


@pytest.mark.parametrize(("assets", "most_workers"), [(1, 1), (40, 4)])
def test_a_small_job_starts_no_idle_worker(tmp_path: Path, assets: int, most_workers: int) -> None:
    # GIVEN a job over `assets` files, planned for four workers
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(assets):
        (folder / f"t{i:02d}.txt").write_text(f"text {i}")
    runner = LocalRunner(tmp_path / "home", workers=4)
    job = runner.create(bot=BOT, source=str(folder), output=str(tmp_path / "out"))
    # WHEN it runs THEN only shards with tasks got a worker: one for a single asset
    outcome = runner.run(job.id)
    assert str(outcome.job.status) == "SUCCEEDED"
    started = [s for s in outcome.shard_stats if s.get("load_seconds") is not None]
    assert 1 <= len(started) <= most_workers
    if assets == 1:
        assert len(started) == 1 and started[0]["done"] == 1
    assert sum(s["done"] for s in started) == assets


def test_an_idle_worker_takes_over_the_slow_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a two-shard job whose shard 0 holds 24 assets ten times slower than shard 1's 24
    monkeypatch.setenv("SPOTBOT_TEST_DELAY", "0.03")  # slow shard: 7 s, quick: 0.7 s
    folder = tmp_path / "in"
    folder.mkdir()
    made = {0: 0, 1: 0}
    i = 0
    while min(made.values()) < 24:
        name = f"t{i:04d}.txt"
        shard = shard_of(name, 2)
        if made[shard] < 24:
            (folder / name).write_text("SLOW words" if shard == 0 else "quick words")
            made[shard] += 1
        i += 1
    runner = LocalRunner(tmp_path / "home", workers=2)
    job = runner.create(bot=BOT, source=str(folder), output=str(tmp_path / "out"), shards=2)
    # WHEN it runs with two workers
    outcome = runner.run(job.id)
    # THEN the worker of the quick shard, once done, took over part of the slow one
    assert str(outcome.job.status) == "SUCCEEDED"
    by_shard = {s["shard"]: s for s in outcome.shard_stats}
    assert set(by_shard) == {0, 1}
    assert by_shard[1]["stolen"] > 0 and by_shard[1]["done"] > 24
    assert by_shard[0]["done"] < 24
    # AND every asset has exactly one result
    lines = (tmp_path / "out" / job.id / "results.jsonl").read_text().splitlines()
    keys = [json.loads(x)["key"] for x in lines]
    assert len(keys) == len(set(keys)) == 48


def test_workers_scale_with_the_work_left() -> None:
    # one worker per four batches at least, never more than asked for, never none
    assert worker_count(8, 1, 4) == 1
    assert worker_count(8, 16, 4) == 1
    assert worker_count(8, 17, 4) == 2
    assert worker_count(8, 10_000, 4) == 8
    assert worker_count(2, 0, 4) == 1
