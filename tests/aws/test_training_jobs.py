"""`spotbot train --cloud` against moto: staging, the managed Spot training job, import, resolve.

moto's training jobs complete at once and write nothing, so SageMakerThatWritesTheModel (a test
double) puts a model.tar.gz at the job's output location when the job is created, as the
container would.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto")

from moto import mock_aws

from spotbot.aws.catalog import CatalogResolver
from spotbot.aws.model_registry import S3ModelRegistry
from spotbot.aws.training_jobs import (
    CloudTrainingOptions,
    SageMakerTraining,
    TrainingJobFailedError,
    train_in_cloud,
    upload_model,
)
from spotbot.bots.sentiment_zh import SentimentZhBot
from spotbot.core.artifacts import ModelManifest
from spotbot.core.errors import UsageError
from spotbot.core.sources import parse_s3_uri

BUCKET = "spotbot-artifacts"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/spotbot-sentiment-zh@sha256:" + "a" * 64
ROLE = "arn:aws:iam::123456789012:role/spotbot-training"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SPOTBOT_ARTIFACTS_BUCKET": BUCKET,
        "SPOTBOT_IMAGE_URIS": json.dumps({"sentiment-zh": IMAGE}),
        "SPOTBOT_TRAINING_ROLE_ARN": ROLE,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def model_dir(tmp_path: Path, version: str) -> Path:
    folder = tmp_path / version
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    ModelManifest(
        "sentiment-zh", version, "transformers", ["negative", "positive"], {"accuracy": 0.8}
    ).write(folder)
    return folder


class SageMakerThatWritesTheModel:
    """Test double: moto's SageMaker, plus the artifact the training container would write."""

    def __init__(self, sagemaker: Any, s3: Any, model: Path):
        self._sagemaker, self._s3, self._model = sagemaker, s3, model

    def create_training_job(self, **request: Any) -> Any:
        answer = self._sagemaker.create_training_job(**request)
        out = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        bucket, prefix = parse_s3_uri(f"{out}/{request['TrainingJobName']}/output/model.tar.gz")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(self._model.iterdir()):  # SageMaker tars model/'s contents
                tar.add(path, arcname=path.name)
        self._s3.put_object(Bucket=bucket, Key=prefix, Body=buffer.getvalue())
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sagemaker, name)


@pytest.mark.integration
def test_cloud_training_runs_spot_imports_the_model_and_the_next_job_resolves_it(
    aws: Any, tmp_path: Path
) -> None:
    import boto3

    # GIVEN local labelled data, and a model already in the S3 registry to fine-tune from
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n好,positive\n差,negative\n", "utf-8")
    registry = S3ModelRegistry(BUCKET, client=aws)
    registry.upload(model_dir(tmp_path, "start-1"))
    sagemaker = SageMakerThatWritesTheModel(
        boto3.client("sagemaker"), aws, model_dir(tmp_path, "cloud-1")
    )
    lines: list[str] = []
    # WHEN `spotbot train --cloud` runs
    manifest = train_in_cloud(
        CloudTrainingOptions(
            bot="sentiment-zh",
            data=str(data),
            epochs=2,
            version="cloud-1",
            hyperparameters={"hidden": 64},
            max_run=1800,
            max_wait=3600,
            job_name="spotbot-sentiment-zh-test",
            poll_seconds=0,
        ),
        echo=lines.append,
        sagemaker=sagemaker,
        s3=aws,
    )
    # THEN the job is managed Spot training with a per-job checkpoint location in the bucket
    job = boto3.client("sagemaker").describe_training_job(
        TrainingJobName="spotbot-sentiment-zh-test"
    )
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
    assert job["CheckpointConfig"]["S3Uri"] == (
        f"s3://{BUCKET}/training/spotbot-sentiment-zh-test/checkpoints/"
    )
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE and job["RoleArn"] == ROLE
    assert job["HyperParameters"] == {
        "bot": "sentiment-zh",
        "seed": "0",
        "epochs": "2",
        "version": "cloud-1",
        "hidden": "64",
    }
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
    }
    assert channels == {
        "train": f"s3://{BUCKET}/training/spotbot-sentiment-zh-test/data/train/",
        "base": registry.uri("sentiment-zh", "start-1"),
    }
    staged = aws.get_object(
        Bucket=BUCKET, Key="training/spotbot-sentiment-zh-test/data/train/reviews.csv"
    )
    assert staged["Body"].read() == data.read_bytes()
    # AND the model is in the S3 registry, and a job started afterwards resolves it
    assert manifest.version == "cloud-1" and any("Completed" in line for line in lines)
    assert CatalogResolver(registry).resolve(SentimentZhBot).version == "cloud-1"
    assert registry.resolve(SentimentZhBot, "start-1").version == "start-1"  # a pin still wins


@pytest.mark.integration
def test_models_import_cloud_uploads_a_local_model(aws: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spotbot.entry.cli import main

    result = CliRunner().invoke(
        main, ["models", "import", str(model_dir(tmp_path, "local-1")), "--cloud"]
    )
    assert result.exit_code == 0, result.output
    assert S3ModelRegistry(BUCKET, client=aws).resolve(SentimentZhBot).version == "local-1"
    with pytest.raises(UsageError, match="already in"):
        upload_model(tmp_path / "local-1", s3=aws)


class _Describe:
    def __init__(self, *answers: dict[str, Any]):
        self.answers = list(answers)

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        return self.answers.pop(0)


def test_a_failed_job_says_why() -> None:
    cloud = SageMakerTraining(
        BUCKET,
        sagemaker=_Describe(
            {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"},
            {
                "TrainingJobStatus": "Failed",
                "SecondaryStatus": "Failed",
                "FailureReason": "TrainingDataError: train.csv:4: label 'maybe'",
            },
        ),
        s3=object(),
    )
    lines: list[str] = []
    with pytest.raises(TrainingJobFailedError, match=r"train\.csv:4"):
        cloud.follow("job", lines.append, 0, sleep=lambda _: None)
    assert lines == ["job: InProgress (Starting)", "job: Failed (Failed)"]


def test_max_wait_shorter_than_max_run_is_refused() -> None:
    from spotbot.aws.training_jobs import training_job_request

    with pytest.raises(UsageError, match="max-wait"):
        training_job_request(
            CloudTrainingOptions(bot="car-model", data="x", max_run=600, max_wait=300),
            "j",
            BUCKET,
            IMAGE,
            ROLE,
            {},
        )
