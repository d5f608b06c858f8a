"""The pipeline's own overhead: store operations, scan, work and end to end, each beside a baseline.

- store: 100,000 tasks written (scan -> store) and claimed + marked (claim -> result -> DONE),
  against the naive way (one transaction per task) measured on a slice in the same run;
- end to end: `spotbot`'s local runner with a trivial bot over 100,000 tiny files, against
  a bare loop (read, tag, append a JSON line: no store, no crash safety);
- ocr-zh: the local runner over the sample images against the bot called in a plain loop on
  the same images, and the share of the runner's wall time spent outside the bot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.nullbot import NullBot
from spotbot.core.records import Job, Result, TaskStatus
from spotbot.core.sources import ScanEntry
from spotbot.core.sqlite_store import SqliteTaskStore
from spotbot.core.steps import task_for
from spotbot.entry.local_runner import LocalRunner, default_workers

REPO = Path(__file__).resolve().parent.parent


def bench_store(n: int, naive_n: int, tmp: Path) -> dict[str, Any]:
    job = Job(id="job-bench", bot="null", source="bench", output="bench", shards=1)
    entries = [ScanEntry(f"dir{i % 100}/asset-{i:07d}.txt", 10) for i in range(n)]

    store = SqliteTaskStore(tmp / "store.sqlite3")
    store.create_job(job)
    began = time.perf_counter()
    for i in range(0, n, 1000):  # a scan page at a time, as the scanner writes them
        store.put_tasks([task_for(job, NullBot, e, 1 << 30) for e in entries[i : i + 1000]])
    put_s = time.perf_counter() - began

    began = time.perf_counter()
    marked = 0
    while tasks := store.claim_tasks(job.id, 0, "w", 1000):
        for i in range(0, len(tasks), 64):  # a worker's batches
            batch = tasks[i : i + 64]
            store.begin_attempt(job.id, [t.id for t in batch])
            store.complete_tasks([
                Result(job.id, t.key, "null", "null-1", TaskStatus.DONE,
                       tags=[{"label": "x", "score": 1.0}]) for t in batch
            ])
            marked += len(batch)
    claim_s = time.perf_counter() - began
    assert marked == n
    store.close()

    # The naive way: a row per transaction, SQLite's defaults (rollback journal, FULL sync).
    naive = sqlite3.connect(tmp / "naive.sqlite3", isolation_level=None)
    naive.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, job TEXT, key TEXT, status TEXT,"
                  " result TEXT)")
    began = time.perf_counter()
    for e in entries[:naive_n]:
        t = task_for(job, NullBot, e, 1 << 30)
        naive.execute("INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, 'PENDING', NULL)",
                      (t.id, job.id, t.key))
    naive_put_s = time.perf_counter() - began
    began = time.perf_counter()
    while row := naive.execute("SELECT id FROM tasks WHERE status = 'PENDING' LIMIT 1").fetchone():
        naive.execute("UPDATE tasks SET status = 'RUNNING' WHERE id = ?", row)
        naive.execute("UPDATE tasks SET status = 'DONE', result = ? WHERE id = ?",
                      (json.dumps({"tags": [{"label": "x", "score": 1.0}]}), row[0]))
    naive_claim_s = time.perf_counter() - began
    naive.close()
    put_rate, claim_rate = n / put_s, n / claim_s
    naive_put, naive_claim = naive_n / naive_put_s, naive_n / naive_claim_s
    return {
        "tasks": n,
        "put_tasks_per_s": round(put_rate),
        "claim_mark_tasks_per_s": round(claim_rate),
        "naive_put_tasks_per_s": round(naive_put),
        "naive_claim_mark_tasks_per_s": round(naive_claim),
        "put_ratio": round(put_rate / naive_put, 1),
        "claim_mark_ratio": round(claim_rate / naive_claim, 1),
    }


def make_tiny_files(root: Path, n: int) -> None:
    for i in range(n):
        folder = root / f"dir{i % 100:02d}"
        if i < 100:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"asset-{i:07d}.txt").write_bytes(b"0123456789")


def bench_end_to_end(n: int, tmp: Path, workers: int) -> dict[str, Any]:
    source = tmp / "tiny"
    make_tiny_files(source, n)
    scan_seen: list[float] = []
    runner = LocalRunner(tmp / "home", workers=workers)
    began = time.perf_counter()
    job = runner.create(bot="benchmarks.nullbot:NullBot", source=str(source),
                        output=str(tmp / "out"))
    runner.on_progress = lambda p: scan_seen.append(time.perf_counter()) if p.phase == "scan" else None
    outcome = runner.run(job.id)
    total_s = time.perf_counter() - began
    assert outcome.summary and outcome.summary["counts"]["done"] == n, outcome.summary
    scan_s = (scan_seen[-1] - began) if scan_seen else float("nan")

    # The floor: read every file, tag it, append a line. No store, no crash safety, one process.
    bot = NullBot()
    began = time.perf_counter()
    with open(tmp / "bare.jsonl", "w") as out:
        for path in sorted(source.rglob("*.txt")):
            pred = bot.predict([bot.decode(path.read_bytes(), path.name)])[0]
            out.write(json.dumps({"key": str(path.relative_to(source)), **pred}) + "\n")
    bare_s = time.perf_counter() - began
    return {
        "assets": n,
        "workers": workers,
        "scan_tasks_per_s": round(n / scan_s),
        "end_to_end_assets_per_s": round(n / total_s),
        "end_to_end_seconds": round(total_s, 2),
        "bare_loop_assets_per_s": round(n / bare_s),
        "ratio_to_bare_loop": round((n / total_s) / (n / bare_s), 2),
    }


def bench_ocr(copies: int, tmp: Path, workers: int) -> dict[str, Any]:
    from spotbot.bots.ocr_zh import OcrZhBot
    from spotbot.core.artifacts import ModelRef

    source = tmp / "signs"
    source.mkdir()
    images = sorted((REPO / "examples" / "signs").glob("*.jpg"))
    for c in range(copies):
        for img in images:
            shutil.copy(img, source / f"{c:02d}-{img.name}")
    n = copies * len(images)

    runner = LocalRunner(tmp / "home-ocr", workers=workers)
    began = time.perf_counter()
    job = runner.create(bot="ocr-zh", source=str(source), output=str(tmp / "out-ocr"))
    outcome = runner.run(job.id)
    wall = time.perf_counter() - began
    assert outcome.summary and outcome.summary["counts"]["done"] == n
    # Time inside the bot (loading and tagging), per worker process, against the run's wall time.
    in_bot = [s["bot_seconds"] + s["load_seconds"] for s in outcome.shard_stats]
    outside_share = 1 - (sum(in_bot) / len(in_bot)) / wall

    bot = OcrZhBot()
    began = time.perf_counter()
    bot.load(ModelRef("ocr-zh", bot.builtin_version or "", None, ""), threads=default_workers())
    for path in sorted(source.iterdir()):
        bot.predict([bot.decode(path.read_bytes(), path.name)])
    bare = time.perf_counter() - began
    return {
        "images": n,
        "workers": workers,
        "pipeline_images_per_s": round(n / wall, 2),
        "bare_bot_images_per_s": round(n / bare, 2),
        "ratio_to_bare_bot": round(bare / wall, 2),
        "wall_share_outside_bot_pct": round(100 * outside_share, 1),
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--naive-tasks", type=int, default=5_000)
    parser.add_argument("--ocr-copies", type=int, default=10)
    parser.add_argument("--workers", type=int, default=default_workers())
    args, _ = parser.parse_known_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="spotbot-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "s").mkdir()
        results["store"] = bench_store(args.tasks, args.naive_tasks, tmp / "s")
        print(json.dumps({"store": results["store"]}), flush=True)
        (tmp / "e").mkdir()
        results["end_to_end"] = bench_end_to_end(args.tasks, tmp / "e", args.workers)
        print(json.dumps({"end_to_end": results["end_to_end"]}), flush=True)
        (tmp / "o").mkdir()
        results["ocr_overhead"] = bench_ocr(args.ocr_copies, tmp / "o", args.workers)
        print(json.dumps({"ocr_overhead": results["ocr_overhead"]}), flush=True)
    results["machine"] = {"cores": default_workers(), "pid": os.getpid() and None}
    return results


if __name__ == "__main__":
    out = main()
    folder = REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.json").write_text(json.dumps(out, indent=2) + "\n")
