"""The demo: every built-in bot over the project's sample assets, then a short table of what each found.

Run by `make demo`. Each bot runs through the real command line (`spotbot tag`), the
same local pipeline a user runs: scan, a process pool of workers, results and summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spotbot.core.plugins import available_bots

HERE = Path(__file__).resolve().parent
SAMPLES = {"ocr-zh": HERE / "signs", "car-model": HERE / "photos", "sentiment-zh": HERE / "texts"}


def found(record: dict) -> str:
    if record["status"] != "DONE":
        return f"{record['status']}: {record.get('error') or ''}"
    if record.get("text"):
        return " / ".join(record["text"].splitlines())
    tags = record.get("tags") or []
    return ", ".join(f"{t['label']} {t['score']:.2f}" for t in tags[:2]) or "(nothing)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="out", help="output folder")
    args = parser.parse_args()
    console = Console(stderr=True)
    installed = available_bots()
    table = Table("bot", "asset", "found", title="spotbot demo")
    failures = 0
    for bot, folder in SAMPLES.items():
        if bot not in installed:
            console.print(f"[yellow]{bot}: not installed, skipped[/]")
            continue
        console.rule(f"{bot} over {folder.relative_to(HERE.parent)}")
        proc = subprocess.run([sys.executable, "-m", "spotbot", "tag", str(folder), "--bot", bot,
                               "--out", args.out, "--json"], stdout=subprocess.PIPE, text=True,
                              check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            failures += 1
            continue
        summary = json.loads(proc.stdout)
        results = Path(summary["output"]) / "results.jsonl"
        for line in results.read_text("utf-8").splitlines():
            record = json.loads(line)
            if record["status"] != "SKIPPED":
                table.add_row(bot, record["key"], found(record))
    Console().print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
