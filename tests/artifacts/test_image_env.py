"""A bot image's environment, tested without a Docker engine: the dependency set the image
installs (images/Dockerfile: `pip install ".[EXTRAS,serve,cloud]"` of a clean copy, the
repository's training/ on PYTHONPATH) in a clean venv, and the image's entry points (serve,
work, train) run from it as plain processes on real inputs, with the image's environment.

ocr-zh's set is built here (about 300 MB, cached under build/ by the requirements' digest);
the torch-based images (car-model, sentiment-zh) share the development venv's resolution.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from spotbot.core import envnames
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BOT = "ocr-zh"
SIGNS = REPO / "examples" / "signs"


def _image_env_vars(home: Path) -> dict[str, str]:
    """The runtime stage's ENV (images/Dockerfile) for this bot, with PATH and HOME."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(home / "opt-spotbot"),
        "SPOTBOT_BOT": BOT,
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="session")
def image_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with exactly what the ocr-zh image installs; spotbot itself from a clean copy."""
    build_args = json.loads((REPO / "images" / "bots.json").read_text())[BOT]
    requirement = f".[{build_args['EXTRAS']},serve,cloud]"
    digest = hashlib.sha256(
        (REPO / "pyproject.toml").read_bytes() + requirement.encode()
    ).hexdigest()[:12]
    venv = REPO / "build" / "image-env" / f"{BOT}-{digest}"
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
        subprocess.run([*pip, f"{source}{requirement[1:]}"], check=True, timeout=900)
        (venv / ".complete").write_text(requirement)
    # The code of this tree, over the cached dependency set (as the image's COPY + install).
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(source)], check=True, timeout=300)
    return python


@pytest.fixture
def image_home(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "training", tmp_path / "opt-spotbot" / "training")
    return tmp_path


def test_the_image_set_is_a_clean_environment(image_python: Path) -> None:
    # GIVEN the image's venv THEN it has the bot's engine and nothing of the dev or torch stacks
    listing = subprocess.run(
        [str(image_python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert {"spotbot", "rapidocr", "onnxruntime", "starlette", "opensearch-py"} <= names
    assert not names & {"torch", "pytest", "moto", "pulumi", "transformers"}


@contextlib.contextmanager
def _serving(python: Path, home: Path) -> Iterator[str]:
    port = free_port()
    opt_ml = home / "opt-ml"
    (opt_ml / "model").mkdir(parents=True)
    env = {
        **_image_env_vars(home),
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
        deadline = time.monotonic() + 90
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


def test_serve_answers_the_sagemaker_contract(image_python: Path, image_home: Path) -> None:
    truth = json.loads((SIGNS / "truth.json").read_text(encoding="utf-8"))
    name, lines = next(iter(truth.items()))
    # WHEN the image's default command serves the built-in model and gets one photo
    with _serving(image_python, image_home) as url:
        response = httpx.post(
            f"{url}/invocations",
            content=(SIGNS / name).read_bytes(),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
    # THEN it reads the sign
    assert response.status_code == 200, response.text
    text = response.json()["text"]
    expected = lines if isinstance(lines, str) else "".join(lines)
    assert expected.replace("\n", "") in text.replace("\n", ""), (expected, text)


def test_train_says_why_ocr_zh_is_not_trained_here(image_python: Path, image_home: Path) -> None:
    # GIVEN a training channel, as SageMaker lays it out
    opt_ml = image_home / "opt-ml"
    channel = opt_ml / "input" / "data" / "train"
    channel.mkdir(parents=True)
    (channel / "labels.tsv").write_text("a.jpg\t出口\n", encoding="utf-8")
    # WHEN the image's train entry point runs
    result = subprocess.run(
        [str(image_python), "-m", "spotbot.entry.container", "train"],
        env={**_image_env_vars(image_home), "SPOTBOT_OPT_ML": str(opt_ml)},
        cwd=image_home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # THEN it fails, and SageMaker's FailureReason says why and what to do instead
    assert result.returncode != 0
    failure = (opt_ml / "output" / "failure").read_text(encoding="utf-8")
    assert "ocr-zh cannot be fine-tuned by spotbot yet" in failure, failure
    assert "spotbot models import" in failure


def test_work_tags_a_shard_from_s3_into_the_index(
    image_python: Path, image_home: Path, aws_env: dict[str, str], osmem_clone: Any
) -> None:
    from spotbot.aws.locations import open_sink, open_source
    from spotbot.aws.model_registry import S3ModelRegistry
    from spotbot.aws.opensearch_store import OpenSearchTaskStore
    from spotbot.core.steps import init_job, scan_job

    # GIVEN photos in S3 and a scanned two-shard job of the image's bot
    s3 = boto3.client("s3")
    for bucket in ("img-in", "img-out", "img-artifacts"):
        s3.create_bucket(Bucket=bucket)
    photos = sorted(SIGNS.glob("*.jpg"))[:4]
    for photo in photos:
        s3.put_object(Bucket="img-in", Key=f"p/{photo.name}", Body=photo.read_bytes())
    with OpenSearchTaskStore(osmem_clone.url) as store:
        job = init_job(
            store,
            S3ModelRegistry("img-artifacts"),
            bot=BOT,
            source=open_source("s3://img-in/p"),
            sink=open_sink("s3://img-out/runs"),
            shards=2,
            job_id="job-image",
        )
        scan_job(store, job, open_source(job.source))
    # WHEN the image's `work` command runs each shard, as a Batch array child would
    for index in range(2):
        env = {
            **_image_env_vars(image_home),
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
    # THEN every photo has its result, with the text read
    with OpenSearchTaskStore(osmem_clone.url) as store:
        counts = store.count_tasks(job.id)
    assert counts.get("DONE") == len(photos), counts
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="img-out", Prefix="runs/")["Contents"]}
    for photo in photos:
        record = json.loads(
            s3.get_object(Bucket="img-out", Key=f"runs/job-image/results/{photo.name}.json")[
                "Body"
            ].read()
        )
        assert record["status"] == "DONE" and record["text"], record
    assert keys
