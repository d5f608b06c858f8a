"""Calibration of the cost estimate: each built-in bot's throughput, and the estimate's accuracy.

1. Measures every built-in bot on its bundled samples (examples/photos, texts, signs) with
   all cores, and writes spotbot/core/data/calibration.json: the reference machine's rate
   ("local", scaled by cores on other machines) and one row per instance type of the price
   table, scaled by vCPUs from the same measurement (the basis says so).
2. Accuracy: runs real local jobs (`spotbot tag`, a whole process) over the bundled samples
   and over a generated source of N text assets, and sets each run's wall time beside the
   estimate made before it. Target: within 20 %.

    python -m benchmarks.bench_calibration [--seconds S] [--generated N] [--no-write]

Results go to benchmarks/results/calibration.json and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spotbot.core.artifacts import ModelRegistry
from spotbot.core.calibration import SAMPLE_FOLDERS, cpu_name, measure, priced_locally, scaled_to
from spotbot.core.cost import (
    LOCAL,
    Calibration,
    Throughput,
    default_calibration,
    default_prices,
    estimate_job,
)
from spotbot.core.plugins import load_bot_class
from spotbot.core.sources import LocalSource
from spotbot.core.steps import sample_source
from spotbot.core.worker import available_cpus
from spotbot.entry.local_runner import worker_count

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TABLE = REPO / "spotbot" / "core" / "data" / "calibration.json"
RESULTS = Path(__file__).resolve().parent / "results"


def calibrate(seconds: float, registry: ModelRegistry) -> Calibration:
    book = default_prices()
    entries: dict[tuple[str, str], Throughput] = {}
    for bot, folder in sorted(SAMPLE_FOLDERS.items()):
        rate = priced_locally(measure(bot, EXAMPLES / folder, registry, min_seconds=seconds), book)
        reference = Throughput(
            **{
                **{k: getattr(rate, k) for k in rate.__dataclass_fields__},
                "basis": rate.basis.replace("measured here: ", "reference machine: "),
            }
        )
        entries[(bot, LOCAL)] = reference
        for itype, price in book.instances.items():
            entries[(bot, itype)] = scaled_to(rate, itype, price.vcpus)
        print(f"{bot}: {rate.assets_per_second:.2f} assets/s, load {rate.load_seconds:.1f}s")
    return Calibration(entries, "spotbot's calibration table")


def generated_texts(folder: Path, count: int) -> Path:
    """`count` reviews: copies of the bundled ones (their encodings kept), under new names."""
    texts = sorted((EXAMPLES / "texts").glob("*.txt"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = texts[i % len(texts)]
        shutil.copyfile(src, folder / f"{i:05d}-{src.name}")
    return folder


def accuracy(bot: str, source: Path, calibration: Calibration, home: Path) -> dict[str, Any]:
    """A real local job's wall time (`spotbot tag` as a user runs it, from the command to its
    exit) beside the estimate made before it."""
    cpus = available_cpus()
    cls = load_bot_class(bot)
    sample = sample_source(LocalSource(source), cls)
    workers = worker_count(cpus, sample.accepted, cls.batch_size)
    est = estimate_job(
        bot, sample, calibration, default_prices(), local_cpus=cpus, local_workers=workers
    )
    predicted = est.compute[0].duration_seconds
    cmd = [sys.executable, "-m", "spotbot", "tag", str(source), "--bot", bot, "--json"]
    cmd += ["--home", str(home), "--out", str(home / "out"), "--workers", str(cpus)]
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    actual = time.perf_counter() - began
    summary = json.loads(done.stdout)
    assert summary["counts"]["done"] == sample.accepted, summary
    return {
        "bot": bot,
        "source": source.name,
        "assets": sample.accepted,
        "workers": workers,
        "estimated_seconds": round(predicted, 1),
        "actual_seconds": round(actual, 1),
        "error_pct": round(100 * (predicted - actual) / actual, 1),
    }


def per_thousand(calibration: Calibration, instance_type: str) -> list[dict[str, Any]]:
    """Each built-in bot's cost per 1,000 assets on `instance_type`: Spot instance time (the
    calibrated throughput times the price; model loads left out) plus an S3 GET per asset and
    a LIST per 1,000 (results.jsonl's few PUTs are per job), beside the managed service's list
    price for the same job."""
    prices = default_prices()
    price = prices.instance(instance_type)
    rows = []
    for bot in sorted(SAMPLE_FOLDERS):
        rate = calibration.get(bot, instance_type)
        managed = prices.managed.get(bot)
        if rate is None or price.spot_hourly is None:
            continue
        compute = 1000 / rate.assets_per_second / 3600 * price.spot_hourly
        usd = compute + prices.s3_get_per_1k + prices.s3_list_per_1k / 1000  # 1 LIST: 1,000 keys
        rows.append(
            {
                "bot": bot,
                "instance_type": instance_type,
                "assets_per_second": round(rate.assets_per_second, 2),
                "spot_compute_usd_per_1k": round(compute, 5),
                "spot_usd_per_1k": round(usd, 5),
                "managed": managed.service if managed else None,
                "managed_usd_per_1k": managed.per_1k if managed else None,
                "managed_over_spot": round(managed.per_1k / usd) if managed else None,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="measure each bot this long")
    parser.add_argument("--generated", type=int, default=2000, help="generated text assets")
    parser.add_argument("--no-write", action="store_true", help="leave the committed table")
    parser.add_argument("--instance-type", default="c6i.xlarge", help="for the cost per 1,000")
    parser.add_argument(
        "--costs-only",
        action="store_true",
        help="only the cost per 1,000, from the committed table",
    )
    args = parser.parse_args()
    if args.costs_only:
        _print_costs(per_thousand(default_calibration(), args.instance_type))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-calibration-"))
    try:
        registry = ModelRegistry(work / "models")
        calibration = calibrate(args.seconds, registry)
        if not args.no_write:
            TABLE.write_text(json.dumps(calibration.to_dict(), indent=2, sort_keys=True) + "\n")
            print(f"wrote {TABLE.relative_to(REPO)}")
        runs = [
            accuracy(bot, EXAMPLES / folder, calibration, work / f"home-{bot}")
            for bot, folder in sorted(SAMPLE_FOLDERS.items())
        ]
        if args.generated:
            texts = generated_texts(work / "generated", args.generated)
            runs.append(accuracy("sentiment-zh", texts, calibration, work / "home-generated"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{'bot':14} {'source':12} {'assets':>7} {'estimate s':>11} {'actual s':>9} {'error':>7}"
    )
    for run in runs:
        print(
            f"{run['bot']:14} {run['source']:12} {run['assets']:7} {run['estimated_seconds']:11}"
            f" {run['actual_seconds']:9} {run['error_pct']:6}%"
        )
    costs = per_thousand(calibration, args.instance_type)
    _print_costs(costs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "calibration.json").write_text(
        json.dumps(
            {"cpu": cpu_name(), "cores": available_cpus(), "runs": runs, "per_1k": costs},
            indent=2,
        )
    )
    return 0


def _print_costs(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'bot':14} {'type':11} {'assets/s':>9} {'Spot $/1k':>10} {'managed $/1k':>13} ratio")
    for r in rows:
        print(
            f"{r['bot']:14} {r['instance_type']:11} {r['assets_per_second']:9} "
            f"{r['spot_usd_per_1k']:10} {r['managed_usd_per_1k']:13} {r['managed_over_spot']}x"
            f"  ({r['managed']})"
        )


if __name__ == "__main__":
    sys.exit(main())
