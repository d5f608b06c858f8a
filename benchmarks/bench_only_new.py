"""Never pay twice: a second run over an unchanged source, with --only-new, against a full rerun.

A first job tags N text assets; then, over the same unchanged source, a full rerun (every
asset tagged again) and an only-new rerun (every result reused) are timed end to end with
the local runner, as `spotbot tag` runs them. Then M assets change and an only-new run must
tag exactly those M. The bot stands in for a model with a fixed time per asset (sleeping,
so the benchmark does not depend on how busy the CPU is): SPOTBOT_BENCH_ASSET_MS, 20 by
default, about ocr-zh's time per small image here.

    python -m benchmarks.bench_only_new [--assets N] [--changed M] [--workers W]

Target: the only-new rerun makes zero bot calls and is at least 20x faster than the full one.
Results go to benchmarks/results/only_new.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.sinks import LocalSink
from spotbot.core.sources import LocalSource
from spotbot.core.steps import init_job
from spotbot.entry.local_runner import LocalRunner

RESULTS = Path(__file__).resolve().parent / "results"
BOT = "benchmarks.bench_only_new:PacedBot"


class PacedBot(Bot):
    """Tags a text with its length, taking SPOTBOT_BENCH_ASSET_MS per asset."""

    name = "paced"
    extensions: ClassVar[frozenset[str]] = frozenset({"txt"})
    batch_size = 32
    builtin_version = "paced-1"
    builtin_origin = "benchmark code"

    def _load(self, model: ModelRef, threads: int) -> None:
        self.seconds = float(os.environ.get("SPOTBOT_BENCH_ASSET_MS", "20")) / 1000.0

    def decode(self, data: bytes, key: str) -> Any:
        return len(data)

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        time.sleep(self.seconds * len(items))
        return [{"tags": [{"label": f"len{n}", "score": 1.0}]} for n in items]


def run_job(runner: LocalRunner, source: Path, out: Path, only_new: bool) -> dict[str, Any]:
    began = time.perf_counter()
    with runner.home.store() as store:
        job = init_job(
            store,
            runner.home.registry(),
            bot=BOT,
            source=LocalSource(source),
            sink=LocalSink(out),
            shards=runner.workers,
            only_new=only_new,
        )
    outcome = runner.run(job.id)
    seconds = time.perf_counter() - began
    assert outcome.summary is not None
    counts = outcome.summary["counts"]
    return {
        "seconds": round(seconds, 2),
        "done": counts["done"],
        "reused": outcome.summary["reused"],
        "tagged_by_bot": sum(int(s.get("done", 0)) for s in outcome.shard_stats),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-only-new-"))
    try:
        source = work / "src"
        source.mkdir()
        for i in range(args.assets):
            (source / f"{i:06d}.txt").write_text(f"asset {i}")
        runner = LocalRunner(work / "home", workers=args.workers)
        first = run_job(runner, source, work / "out", only_new=False)
        full = run_job(runner, source, work / "out", only_new=False)
        only_new = run_job(runner, source, work / "out", only_new=True)
        for i in range(args.changed):
            path = source / f"{i * (args.assets // max(args.changed, 1)):06d}.txt"
            path.write_text(f"changed {i}")
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        after_change = run_job(runner, source, work / "out", only_new=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = full["seconds"] / only_new["seconds"]
    result = {
        "assets": args.assets,
        "asset_ms": float(os.environ.get("SPOTBOT_BENCH_ASSET_MS", "20")),
        "workers": args.workers,
        "first": first,
        "full_rerun": full,
        "only_new_rerun": only_new,
        "only_new_after_change": after_change | {"changed": args.changed},
        "speedup": round(ratio, 1),
    }
    print(f"{'run':24} {'seconds':>8} {'by bot':>7} {'reused':>7}")
    for name in ("first", "full_rerun", "only_new_rerun", "only_new_after_change"):
        row = result[name]
        print(f"{name:24} {row['seconds']:8} {row['tagged_by_bot']:7} {row['reused']:7}")
    print(f"only-new rerun: {ratio:.1f}x faster than a full rerun (target >= 20x)")
    assert only_new["tagged_by_bot"] == 0, "an only-new rerun called the bot"
    assert after_change["tagged_by_bot"] == args.changed, "not exactly the changed assets"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "only_new.json").write_text(json.dumps(result, indent=2))
    return 0 if ratio >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
