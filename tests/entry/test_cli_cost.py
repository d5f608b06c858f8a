"""`spotbot estimate` and `spotbot calibrate` as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, base_env, run_cli

WORDS = "tests.fakebots:WordsBot"


def test_estimate_counts_the_bundled_photos_and_prices_them(home: Path) -> None:
    # WHEN the bundled photos are estimated for car-model on one instance type
    done = run_cli(
        "estimate",
        str(EXAMPLES / "photos"),
        "--bot",
        "car-model",
        "--instance-type",
        "c6i.xlarge",
        "--json",
        env=base_env(home),
    )
    # THEN the five photos (expected.json is not one) are counted and priced, tagging nothing
    assert done.returncode == 0, done.stderr
    est = json.loads(done.stdout)
    assert est["sample"]["accepted"] == 5 and est["sample"]["complete"] is True
    assert est["sample"]["accepted_bytes"] == sum(
        p.stat().st_size for p in (EXAMPLES / "photos").glob("*.jpg")
    )
    local, c6i = est["compute"]
    assert local["instance_type"] == "local" and local["on_demand_usd"] > 0
    assert c6i["instance_type"] == "c6i.xlarge" and 0 < c6i["spot_usd"] < c6i["on_demand_usd"]
    assert est["managed"]["service"].startswith("Amazon Rekognition")
    assert est["prices"].startswith("table ")
    assert not (home / "spotbot.sqlite3").exists() or "job-" not in done.stderr


def test_estimate_table_output_names_the_managed_price(home: Path) -> None:
    done = run_cli("estimate", str(EXAMPLES / "texts"), "--bot", "sentiment-zh", env=base_env(home))
    assert done.returncode == 0, done.stderr
    assert "12 assets to tag" in done.stdout
    assert "Amazon Comprehend" in done.stdout and "c6i.xlarge" in done.stdout


def test_estimate_bad_input_is_one_line_and_exit_2(home: Path, tmp_path: Path) -> None:
    cases = [
        ("estimate", str(tmp_path / "missing"), "--bot", "car-model"),
        ("estimate", str(EXAMPLES / "photos"), "--bot", "no-such-bot"),
        ("estimate", str(EXAMPLES / "photos"), "--bot", "car-model", "--instance-type", "z9.x"),
        ("estimate", str(EXAMPLES / "photos"), "--bot", "car-model", "--prices", "nope.json"),
        ("estimate", str(EXAMPLES / "photos"), "--bot", "car-model", "--max-pages", "0"),
    ]
    for args in cases:
        done = run_cli(*args, env=base_env(home))
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert done.stderr.startswith("error: ")


def test_estimate_reads_a_price_file(home: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"c6i.xlarge": {"vcpus": 4, "on_demand": 1.0, "spot": 0.5}}))
    done = run_cli(
        "estimate",
        str(EXAMPLES / "photos"),
        "--bot",
        "car-model",
        "--instance-type",
        "c6i.xlarge",
        "--prices",
        str(prices),
        "--json",
        env=base_env(home),
    )
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["compute"][1]
    assert row["price_source"] == str(prices)
    assert row["spot_usd"] == pytest.approx(row["instance_hours"] * 0.5, rel=1e-2)
    assert row["on_demand_usd"] == pytest.approx(row["instance_hours"] * 1.0, rel=1e-2)


def test_calibrate_writes_a_local_calibration_that_estimate_then_prefers(
    home: Path, tmp_path: Path
) -> None:
    # GIVEN a folder of texts for the words test bot
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.txt").write_text(f"hello world {i}")
    env = base_env(home, SPOTBOT_TEST_DELAY="0.01")
    # WHEN this machine is calibrated on them
    done = run_cli(
        "calibrate", "--bot", WORDS, "--assets", str(folder), "--seconds", "0.3", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # THEN a rate near 1/delay is written under the home, measured here
    rate = out["rates"]["words"]
    # one worker process per core, each near 1 / delay
    assert 20 < rate / len(os.sched_getaffinity(0)) < 100, rate
    written = json.loads((home / "calibration.json").read_text())
    local = written["bots"]["words"]["local"]
    assert local["basis"].startswith("measured here") and local["vcpu_hour_usd"] > 0
    cores = len(os.sched_getaffinity(0))
    # with the worker count it was measured with, the load and a one-asset job's own time
    assert local["workers"] == cores and local["load_seconds"] > 0 and local["job_seconds"] >= 0
    # AND the estimate uses it for this machine: six texts start one worker of them
    est = run_cli("estimate", str(folder), "--bot", WORDS, "--json", env=env)
    assert est.returncode == 0, est.stderr
    row = json.loads(est.stdout)["compute"][0]
    assert row["instance_type"] == "local"
    assert row["assets_per_second"] == round(rate / cores, 4)
    assert row["duration_seconds"] == pytest.approx(
        6 / (rate / cores) + local["load_seconds"] + local["job_seconds"], abs=0.02
    )


def test_calibrate_without_samples_says_what_to_pass(home: Path, tmp_path: Path) -> None:
    done = run_cli("calibrate", "--bot", WORDS, env=base_env(home), cwd=tmp_path)
    assert done.returncode == 2
    assert "no sample assets for" in done.stderr and "--assets" in done.stderr


def test_tag_only_new_reuses_the_first_runs_results(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.txt").write_text(f"some words {i}")
    env = base_env(home)
    out = str(tmp_path / "out")
    first = run_cli("tag", str(folder), "--bot", WORDS, "--out", out, "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["reused"] == 0
    (folder / "new.txt").write_text("a new one")
    again = run_cli(
        "tag", str(folder), "--bot", WORDS, "--out", out, "--only-new", "--json", env=env
    )
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)["counts"]
    assert (counts["done"], json.loads(again.stdout)["reused"]) == (5, 4)
    assert "reused 4" in again.stderr


def test_tag_budget_stops_and_resume_goes_on_with_a_new_one(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03d}.txt").write_text(f"some words {i}")
    env = base_env(home, SPOTBOT_TEST_DELAY="0.005")
    out = str(tmp_path / "out")
    # WHEN a job runs with a budget of a fraction of a cent
    done = run_cli(
        "tag",
        str(folder),
        "--bot",
        WORDS,
        "--out",
        out,
        "--budget-usd",
        "0.0000005",
        "--json",
        env=env,
    )
    # THEN it stops BUDGET_EXCEEDED (exit 1), saying so
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "BUDGET_EXCEEDED" and summary["remaining"] > 0
    assert "budget reached" in done.stderr
    job_id = summary["job_id"]
    status = run_cli("status", job_id, env=env)
    assert "BUDGET_EXCEEDED" in status.stdout and "CPU-hours = $" in status.stdout
    assert "budget" in status.stdout
    # AND resume with a new budget finishes it
    again = run_cli("resume", job_id, "--budget-usd", "5", "--json", env=env)
    assert again.returncode == 0, again.stderr
    final = json.loads(again.stdout)
    assert final["status"] == "SUCCEEDED" and final["counts"]["done"] == 300
    assert final["spend"]["budget_usd"] == 5.0


def test_a_zero_budget_is_refused_in_one_line(home: Path, tmp_path: Path) -> None:
    done = run_cli("tag", str(tmp_path), "--bot", WORDS, "--budget-usd", "0", env=base_env(home))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
