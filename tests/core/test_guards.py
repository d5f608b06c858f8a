"""Early abort and the budget cap: the rules, and jobs that stop by them (local runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotbot.core.guards import budget_abort, failure_abort, spend
from spotbot.core.records import Job, JobStatus
from spotbot.core.sinks import LocalSink
from spotbot.core.sources import LocalSource
from spotbot.core.steps import init_job, reopen_job
from spotbot.entry.local_runner import LocalRunner

WORDS = "tests.fakebots:WordsBot"


def _job(**options: object) -> Job:
    return Job(id="j", bot="words", source="s", output="o", max_failure_pct=10.0, options=options)


def test_failures_are_judged_only_after_the_minimum_sample() -> None:
    assert failure_abort(_job(), done=0, failed=199, min_sample=200) is None
    reason = failure_abort(_job(), done=0, failed=200, min_sample=200)
    assert reason is not None and "200 of the first 200 assets failed (100.0%)" in reason
    assert failure_abort(_job(), done=190, failed=20, min_sample=200) is None  # 9.5%
    lenient = Job(id="j", bot="w", source="s", output="o", max_failure_pct=100.0)
    assert failure_abort(lenient, done=0, failed=500, min_sample=200) is None


def test_budget_counts_the_work_in_flight() -> None:
    assert budget_abort(1.0, spent=0.5, per_asset=0.001, in_flight=400) is None
    reason = budget_abort(1.0, spent=0.5, per_asset=0.001, in_flight=600)
    assert reason is not None and "$1.1000 with the work in flight" in reason


def test_spend_is_cpu_time_of_finished_and_running_runs_at_the_vcpu_price() -> None:
    job = _job(
        cpu_seconds=3600.0,
        run_started_at="2026-01-01T00:00:00.000Z",
        run_cpus=2,
        vcpu_hour_usd=0.05,
        budget_usd=1.0,
    )
    now = 1767225600.0 + 1800  # half an hour into the run
    assert spend(job, now) == {
        "cpu_hours": 2.0,
        "usd": 0.1,
        "vcpu_hour_usd": 0.05,
        "budget_usd": 1.0,
    }


def _texts(folder: Path, n: int, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"t{i:04d}.txt").write_text(f"{body} {i}")
    return folder


def _create(runner: LocalRunner, source: Path, out: Path, **kw: object) -> str:
    with runner.home.store() as store:
        job = init_job(
            store,
            runner.home.registry(),
            bot=WORDS,
            source=LocalSource(source),
            sink=LocalSink(out),
            shards=2,
            **kw,  # type: ignore[arg-type]
        )
    return job.id


def test_a_job_whose_assets_all_fail_stops_after_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 1,500 assets that all make the bot fall over (slowly enough to be watched)
    monkeypatch.setenv("SPOTBOT_TEST_DELAY", "0.004")
    source, out = _texts(tmp_path / "src", 1500, "CRASH"), tmp_path / "out"
    runner = LocalRunner(tmp_path / "home", workers=2)
    job_id = _create(runner, source, out, max_failure_pct=20.0)
    # WHEN it runs
    outcome = runner.run(job_id)
    # THEN it stops FAILED well before the end, saying why and how much was left
    assert outcome.job.status == JobStatus.FAILED
    summary = json.loads((out / job_id / "summary.json").read_text())
    assert summary["status"] == "FAILED"
    assert (
        summary["error"].startswith("stopped early:") and "over the 20% allowed" in summary["error"]
    )
    attempted = summary["counts"]["failed"] + summary["counts"]["done"]
    assert 200 <= attempted < 1500 and summary["remaining"] == 1500 - attempted
    assert f"{summary['remaining']} assets were not tagged" in summary["error"]


def test_a_job_stops_at_its_budget_and_resumes_with_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a job of 400 assets with a budget a few batches' worth
    monkeypatch.setenv("SPOTBOT_TEST_DELAY", "0.005")
    source, out = _texts(tmp_path / "src", 400, "fine words"), tmp_path / "out"
    runner = LocalRunner(tmp_path / "home", workers=2)
    job_id = _create(runner, source, out, budget_usd=0.0000005, vcpu_hour_usd=0.05)
    # WHEN it runs
    outcome = runner.run(job_id)
    # THEN it ends BUDGET_EXCEEDED with what it tagged finalized and the rest counted
    assert outcome.job.status == JobStatus.BUDGET_EXCEEDED
    summary = json.loads((out / job_id / "summary.json").read_text())
    assert summary["status"] == "BUDGET_EXCEEDED" and summary["error"].startswith("budget reached")
    assert summary["remaining"] > 0
    assert summary["counts"]["done"] + summary["remaining"] == 400
    assert summary["spend"]["budget_usd"] == 0.0000005 and summary["spend"]["usd"] > 0
    lines = (out / job_id / "results.jsonl").read_text().splitlines()
    assert len(lines) == summary["counts"]["done"]
    # WHEN it is resumed with a larger budget
    with runner.home.store() as store:
        reopen_job(store, job_id, budget_usd=100.0)
    outcome = runner.run(job_id, reopen_failed=True)
    # THEN it finishes, and the spend covers both runs
    assert outcome.job.status == JobStatus.SUCCEEDED
    final = json.loads((out / job_id / "summary.json").read_text())
    assert final["counts"]["done"] == 400 and final["remaining"] == 0
    assert final["spend"]["cpu_hours"] > summary["spend"]["cpu_hours"]
    assert final["spend"]["budget_usd"] == 100.0


def test_a_budget_must_be_positive(tmp_path: Path) -> None:
    runner = LocalRunner(tmp_path / "home", workers=1)
    from spotbot.core.errors import UsageError

    with pytest.raises(UsageError, match="positive amount of USD"):
        _create(runner, _texts(tmp_path / "s", 1, "x"), tmp_path / "o", budget_usd=0.0)
