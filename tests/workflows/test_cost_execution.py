"""Cost in a state-machine execution: a budget that stops the workers, an early abort after the
failure sample, incremental (only-new) jobs, and the endpoint's hours in the spend.

The same deployment as tests/workflows/test_state_machine_execution.py (its ``cloud``
fixture): moto interprets the real machines, the real handlers answer the Lambda tasks, the
real Batch worker tags each array child's shard, the index is an osmem-server clone.
Run under .venv-sfn: ``-m stepfunctions``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("aws_lambda_powertools")
pytest.importorskip("osmem_server")

from tests import sfn_support as sfn
from tests.workflows.test_state_machine_execution import (
    GOOD,
    N_GOOD,
    RETRY,
    Cloud,
    deployed_cloud,
)

pytestmark = [
    pytest.mark.stepfunctions,
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, osmem_clone: Any) -> Iterator[Cloud]:
    yield from deployed_cloud(monkeypatch, osmem_clone)


def _results_jsonl(cloud: Cloud, job_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in cloud.output_json(job_id, "results.jsonl").splitlines()]


def _predicted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the bot is asked to tag, in a worker or behind the endpoint."""
    from tests.fakebots import WordsBot

    seen: list[str] = []
    predict = WordsBot.predict

    def counting(self: WordsBot, items: Sequence[Any]) -> Any:
        seen.extend(str(x) for x in items)
        return predict(self, items)

    monkeypatch.setattr(WordsBot, "predict", counting)
    return seen


# --- the budget -----------------------------------------------------------------------------
def test_a_budget_stops_the_job_part_way_and_a_retry_with_a_new_budget_finishes_it(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 30 assets, an endpoint-mode job and a budget smaller than its first batch costs
    # (the bot takes 10 ms an asset, so the first check finds some spend)
    cloud.put_assets(GOOD)
    monkeypatch.setenv("SPOTBOT_TEST_DELAY", "0.01")
    predicted = _predicted(monkeypatch)  # behind the endpoint, in the serving container
    # WHEN the job runs
    execution = cloud.run("job-bx", inference="endpoint", budget_usd=1e-9)
    # THEN the workers stopped claiming: the job ended BUDGET_EXCEEDED, finalized and cleaned up
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "Spotbot.BudgetExceeded", execution
    assert "budget reached" in execution["cause"] and "Traceback" not in execution["cause"]
    assert cloud.lambdas.names()[-2:] == ["finalize", "cleanup"]
    assert all(c.error is None for c in cloud.lambdas.calls)
    job = cloud.store.get_job("job-bx")
    assert str(job.status) == "BUDGET_EXCEEDED" and job.finished_at
    assert job.error is not None and "budget reached" in job.error
    assert cloud.lambdas.calls[-1].result["endpoint_deleted"] is True
    assert cloud.endpoints_left() == {"endpoints": [], "configs": [], "models": []}
    # and every worker exited 0 (Batch must not retry a budget stop), most without tagging
    assert cloud.workers.runs and all(r.exit_code == 0 for r in cloud.workers.runs)
    stopped = [r for r in cloud.workers.runs if r.reason.startswith("budget reached")]
    assert len(stopped) == len(cloud.workers.runs) == 5
    # and the results so far are in S3 and the index, the summary says how many are left
    summary = cloud.output_json("job-bx", "summary.json")
    done, left = summary["counts"]["done"], summary["remaining"]
    assert summary["status"] == "BUDGET_EXCEEDED" and 0 < done < N_GOOD
    assert done + left == N_GOOD and f"{left} assets were not tagged" in summary["error"]
    tasks = cloud.tasks("job-bx")
    assert sum(v["status"] == "DONE" for v in tasks.values()) == done
    assert sum(v["status"] == "PENDING" for v in tasks.values()) == left
    lines = _results_jsonl(cloud, "job-bx")
    assert len(lines) == done and {x["status"] for x in lines} == {"DONE"}
    assert len(cloud.result_objects("job-bx")) == done
    # and the spend counts the workers' time and the endpoint's hours, over the budget
    spend = summary["spend"]
    assert spend["budget_usd"] == 1e-9 and spend["usd"] > spend["budget_usd"]
    assert spend["cpu_hours"] > 0 and spend["endpoint_hours"] > 0
    assert spend["endpoint_hour_usd"] == 0.115  # ml.m5.large, the shipped hosting table
    # and the S3 requests: a GET per asset read, a PUT per result object and per output, one
    # listing page
    assert spend["requests"] == {"get": done, "put": done + 3, "list": 1}
    expected = (done * 0.0004 + (done + 3) * 0.005 + 0.005) / 1000
    assert spend["requests_usd"] == pytest.approx(expected, abs=1e-6) and expected > 0

    # WHEN the user retries it through the API with a new budget
    first_runs = len(cloud.workers.runs)
    status, body = cloud.api("POST", "/jobs/job-bx/retry", {"budget_usd": 50})
    assert status == 202, body
    assert body["execution_name"] == "job-bx-retry1" and body["untagged"] == left
    arn = f"arn:aws:states:{sfn.REGION}:{sfn.ACCOUNT}:execution:{RETRY}:job-bx-retry1"
    retried = sfn.wait_for_execution(cloud.sfn, arn)
    # THEN it finishes the job: every asset tagged exactly once, the endpoint gone again
    assert retried["status"] == "SUCCEEDED", (retried, cloud.workers.runs[first_runs:])
    tasks = cloud.tasks("job-bx")
    assert {v["status"] for v in tasks.values()} == {"DONE"} and len(tasks) == N_GOOD
    assert Counter(predicted) == Counter(body.decode() for body in GOOD.values())
    lines = _results_jsonl(cloud, "job-bx")
    assert sorted(x["key"] for x in lines) == sorted(GOOD)
    assert sorted(cloud.result_objects("job-bx")) == sorted(f"{k}.json" for k in GOOD)
    summary = cloud.output_json("job-bx", "summary.json")
    assert summary["status"] == "SUCCEEDED" and summary["remaining"] == 0
    assert summary["spend"]["budget_usd"] == 50.0
    # and the spend kept the first run's time and hours, and added the retry's
    assert summary["spend"]["cpu_hours"] > spend["cpu_hours"]
    assert summary["spend"]["endpoint_hours"] > spend["endpoint_hours"]
    assert str(cloud.store.get_job("job-bx").status) == "SUCCEEDED"
    assert cloud.endpoints_left() == {"endpoints": [], "configs": [], "models": []}


# --- early abort ----------------------------------------------------------------------------
def test_a_job_whose_every_asset_fails_stops_after_the_minimum_sample(cloud: Cloud) -> None:
    # GIVEN 60 assets that all fail to decode, a sample of 5 and at most 10 % failures
    bad = {f"bad{i:03d}.txt": b"\xff\xfe not utf-8 \xff" for i in range(60)}
    cloud.put_assets(bad)
    # WHEN the job runs
    execution = cloud.run("job-ea", max_failure_pct=10, min_failure_sample=5)
    # THEN the workers stopped soon after the sample: most assets were never attempted
    runs = cloud.workers.runs
    assert len(runs) == 5 and all(r.exit_code == 0 for r in runs), runs
    assert all(r.reason.startswith("stopped early") for r in runs), runs
    tasks = cloud.tasks("job-ea")
    failed = sum(v["status"] == "FAILED" for v in tasks.values())
    pending = sum(v["status"] == "PENDING" for v in tasks.values())
    assert 5 <= failed <= 24 and failed + pending == 60, (failed, pending)
    # and the machine finalized and cleaned up the job FAILED, the reason in job and summary
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "Spotbot.FailureThresholdExceeded"
    assert cloud.lambdas.names()[-2:] == ["finalize", "cleanup"]
    job = cloud.store.get_job("job-ea")
    assert str(job.status) == "FAILED" and job.error is not None
    assert job.error.startswith("stopped early") and "over the 10% allowed" in job.error
    assert f"{pending} assets were not tagged" in job.error and execution["cause"] == job.error
    summary = cloud.output_json("job-ea", "summary.json")
    assert summary["status"] == "FAILED" and summary["error"] == job.error
    assert summary["counts"]["failed"] == failed and summary["remaining"] == pending


# --- incremental ----------------------------------------------------------------------------
def test_an_incremental_job_tags_only_what_changed(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a finished job over 30 assets
    cloud.put_assets(GOOD)
    predicted = _predicted(monkeypatch)
    assert cloud.run("job-n1")["status"] == "SUCCEEDED"
    assert len(predicted) == N_GOOD
    # WHEN an incremental job runs over the unchanged prefix
    predicted.clear()
    runs_before = len(cloud.workers.runs)
    execution = cloud.run("job-n2", incremental=True)
    # THEN it makes no bot call (no worker even starts) and reports every asset as reused
    assert execution["status"] == "SUCCEEDED", execution
    assert predicted == [] and len(cloud.workers.runs) == runs_before
    summary = cloud.output_json("job-n2", "summary.json")
    assert summary["counts"]["done"] == N_GOOD and summary["reused"] == N_GOOD
    lines = _results_jsonl(cloud, "job-n2")
    assert sorted(x["key"] for x in lines) == sorted(GOOD)
    assert {x["reused_from"] for x in lines} == {"job-n1"}
    assert {v["status"] for v in cloud.tasks("job-n2").values()} == {"DONE"}
    # WHEN three objects change and another incremental job runs
    changed = {key: f"changed {key} text".encode() for key in list(GOOD)[:3]}
    cloud.put_assets(changed)
    execution = cloud.run("job-n3", incremental=True)
    # THEN exactly those three are tagged, the other 27 reused
    assert execution["status"] == "SUCCEEDED", execution
    assert sorted(predicted) == sorted(body.decode() for body in changed.values())
    summary = cloud.output_json("job-n3", "summary.json")
    assert summary["counts"]["done"] == N_GOOD and summary["reused"] == N_GOOD - 3
    lines = {x["key"]: x for x in _results_jsonl(cloud, "job-n3")}
    assert all("reused_from" not in lines[k] for k in changed)
    assert lines[next(iter(changed))]["tags"][0]["label"] == "changed"
    assert {lines[k]["reused_from"] for k in GOOD if k not in changed} == {"job-n1"}
