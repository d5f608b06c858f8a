"""The local runner starts only the workers a job needs: each one loads the model once."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotbot.entry.local_runner import LocalRunner

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
