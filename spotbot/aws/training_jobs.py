"""SageMaker managed Spot training of a bot: data upload, the training job, following it, import.

Layout in the artifacts bucket, per job (the training role's policy grants exactly these):
    training/<job>/data/<channel>/...   the uploaded (or copied) data: train, validation, base
    training/<job>/checkpoints/         /opt/ml/checkpoints, synced by SageMaker (Spot resume)
    training/<job>/output/<job>/output/model.tar.gz   SageMaker's model artifact
The model is then imported into the S3 registry (models/<bot>/<version>/, bot.json last), where
the next tagging job resolves it as the newest version.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotbot.aws.clients import boto_client
from spotbot.aws.model_registry import S3ModelRegistry
from spotbot.aws.settings import CloudSettings, ConfigError
from spotbot.core import envnames
from spotbot.core.artifacts import MANIFEST, ModelManifest, ModelRegistry, extract_model_archive
from spotbot.core.errors import CloudServiceError, ModelError, SpotbotError, UsageError
from spotbot.core.plugins import load_bot_class
from spotbot.core.sources import parse_s3_uri

TRAINING_PREFIX = "training/"
JOB_NAME_PREFIX = "spotbot-"  # the training role's starter policy is scoped to it
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TERMINAL = ("Completed", "Failed", "Stopped")
# Bots whose trainer fine-tunes from a model folder (the `base` channel).
BASE_CHANNEL_BOTS = frozenset({"sentiment-zh"})
Echo = Callable[[str], None]


class TrainingJobFailedError(SpotbotError):
    """The SageMaker training job ended Failed or Stopped; the message carries its reason."""


@dataclass(slots=True)
class CloudTrainingOptions:
    bot: str
    data: str  # a local folder/file or s3://bucket/prefix
    validation: str | None = None
    base: str | None = None
    epochs: int | None = None
    time_limit: float | None = None
    version: str | None = None
    seed: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    instance_type: str = "ml.m5.xlarge"
    max_run: int = 3600
    max_wait: int = 7200
    image: str | None = None
    role: str | None = None
    bucket: str | None = None
    job_name: str | None = None
    volume_gb: int = 30
    poll_seconds: float = 15.0


def job_name(bot: str, now: float | None = None) -> str:
    """spotbot-<bot>-<UTC time>: unique per second, within SageMaker's 63 characters."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return re.sub(r"[^A-Za-z0-9-]", "-", f"{JOB_NAME_PREFIX}{bot}-{stamp}")[:63]


def hyperparameters(options: CloudTrainingOptions) -> dict[str, str]:
    """Everything as strings, as SageMaker requires (spotbot.training.contract parses them back)."""
    values: dict[str, Any] = {
        "bot": options.bot,
        "seed": options.seed,
        "epochs": options.epochs,
        "time_limit": options.time_limit,
        "version": options.version,
        **options.hyperparameters,
    }
    if options.base and options.bot not in BASE_CHANNEL_BOTS:
        values["base"] = options.base  # car-model: a backbone name, not a model folder
    return {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if v is not None
    }


def training_job_request(
    options: CloudTrainingOptions,
    name: str,
    bucket: str,
    image: str,
    role: str,
    channels: dict[str, str],
) -> dict[str, Any]:
    """The CreateTrainingJob request: managed Spot, max run and wait, per-job checkpoints."""
    if options.max_wait < options.max_run:
        raise UsageError(
            f"--max-wait ({options.max_wait} s) must be at least --max-run"
            f" ({options.max_run} s): it covers waiting for Spot capacity too"
        )
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": role,
        "HyperParameters": hyperparameters(options),
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{TRAINING_PREFIX}{name}/output/"},
        "ResourceConfig": {
            "InstanceType": options.instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": options.volume_gb,
        },
        "StoppingCondition": {
            "MaxRuntimeInSeconds": options.max_run,
            "MaxWaitTimeInSeconds": options.max_wait,
        },
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {
            "S3Uri": f"s3://{bucket}/{TRAINING_PREFIX}{name}/checkpoints/",
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        "Tags": [{"Key": "spotbot:bot", "Value": options.bot}],
    }


class SageMakerTraining:
    """The adapter: S3 and SageMaker calls for one training job, boto errors as spotbot errors."""

    def __init__(
        self, bucket: str, sagemaker: Any = None, s3: Any = None, models_prefix: str = "models/"
    ):
        self.bucket = bucket
        self.sagemaker = sagemaker or boto_client("sagemaker")
        self.s3 = s3 or boto_client("s3")
        self.models_prefix = models_prefix

    def registry(self) -> Any:
        return S3ModelRegistry(self.bucket, self.models_prefix, client=self.s3)

    def stage_channel(self, source: str, name: str, channel: str) -> str:
        """Upload a local file/folder (or copy an s3:// prefix) under training/<job>/data/."""
        prefix = f"{TRAINING_PREFIX}{name}/data/{channel}/"
        with _aws(f"staging the {channel} data"):
            if source.startswith("s3://"):
                bucket, key_prefix = parse_s3_uri(source)
                # Copied so the training role reads only its own prefix (least privilege).
                pages = self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=key_prefix
                )
                keys = [
                    o["Key"]
                    for page in pages
                    for o in page.get("Contents", [])
                    if not o["Key"].endswith("/")
                ]
                if not keys:
                    raise UsageError(f"{source}: no objects to train on")
                for key in keys:
                    rel = key[len(key_prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
                    self.s3.copy({"Bucket": bucket, "Key": key}, self.bucket, prefix + rel)
            else:
                path = Path(source)
                if not path.exists():
                    raise UsageError(f"{source}: no such file or folder")
                files = (
                    [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
                )
                for file in files:
                    rel = file.name if path.is_file() else file.relative_to(path).as_posix()
                    self.s3.upload_file(str(file), self.bucket, prefix + rel)
        return f"s3://{self.bucket}/{prefix}"

    def base_channel(self, bot: str, base: str | None) -> str | None:
        """The model to fine-tune from: a local folder, a registry version, else the newest."""
        if base and Path(base).is_dir():
            return None  # staged as a local folder by the caller
        registry = self.registry()
        with _aws("reading the model registry"):
            if base:
                registry.get(bot, base)
                return str(registry.uri(bot, base))
            versions = registry.versions(bot)
        return str(registry.uri(bot, versions[0].version)) if versions else None

    def start(self, request: dict[str, Any]) -> str:
        with _aws("creating the training job"):
            return str(self.sagemaker.create_training_job(**request)["TrainingJobArn"])

    def follow(
        self,
        name: str,
        echo: Echo,
        poll_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll DescribeTrainingJob until the job ends; echo each status change."""
        seen = None
        while True:
            with _aws("following the training job"):
                job = self.sagemaker.describe_training_job(TrainingJobName=name)
            status = (job["TrainingJobStatus"], job.get("SecondaryStatus"))
            if status != seen:
                echo(f"{name}: {status[0]} ({status[1]})")
                seen = status
            if status[0] in TERMINAL:
                break
            sleep(poll_seconds)
        if status[0] != "Completed":
            raise TrainingJobFailedError(
                f"training job {name} {status[0]}: {job.get('FailureReason') or 'no reason given'}"
            )
        return dict(job)

    def import_artifact(self, job: dict[str, Any]) -> ModelManifest:
        """Download model.tar.gz, check its bot.json, upload it to the S3 registry (bot.json last)."""
        uri = job["ModelArtifacts"]["S3ModelArtifacts"]
        bucket, key = parse_s3_uri(uri)
        with tempfile.TemporaryDirectory(prefix="spotbot-train-") as tmp:
            archive = Path(tmp) / "model.tar.gz"
            with _aws(f"downloading {uri}"):
                self.s3.download_file(bucket, key, str(archive))
            model = Path(tmp) / "model"
            extract_model_archive(archive, model, where=uri)
            if not (model / MANIFEST).is_file():
                raise ModelError(f"{uri}: the model has no {MANIFEST}")
            with _aws("uploading the model to the registry"):
                return self.registry().upload(model)  # type: ignore[no-any-return]


def train_in_cloud(
    options: CloudTrainingOptions,
    echo: Echo = lambda _: None,
    sagemaker: Any = None,
    s3: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ModelManifest:
    """Stage the data, start a managed Spot training job, follow it and import its model."""
    settings = CloudSettings.from_env()
    bucket = options.bucket or settings.artifacts_bucket
    if not bucket:
        raise ConfigError(f"no artifacts bucket: pass --bucket or set {envnames.ARTIFACTS_BUCKET}")
    image = options.image or settings.image_uris.get(options.bot)
    if not image:
        raise ConfigError(f"no image for {options.bot}: pass --image or set {envnames.IMAGE_URIS}")
    role = options.role or _env(envnames.TRAINING_ROLE_ARN)
    if not role:
        raise ConfigError(f"no training role: pass --role or set {envnames.TRAINING_ROLE_ARN}")
    cloud = SageMakerTraining(bucket, sagemaker, s3, settings.models_prefix)
    name = options.job_name or job_name(options.bot)
    channels = {"train": cloud.stage_channel(options.data, name, "train")}
    if options.validation:
        channels["validation"] = cloud.stage_channel(options.validation, name, "validation")
    if options.bot in BASE_CHANNEL_BOTS:
        base = cloud.base_channel(options.bot, options.base)
        if options.base and Path(options.base).is_dir():
            channels["base"] = cloud.stage_channel(options.base, name, "base")
        elif base:
            channels["base"] = base
    request = training_job_request(options, name, bucket, image, role, channels)
    arn = cloud.start(request)
    echo(
        f"started {arn} (managed Spot, max run {options.max_run} s, max wait {options.max_wait} s)"
    )
    job = cloud.follow(name, echo, options.poll_seconds, sleep)
    manifest = cloud.import_artifact(job)
    echo(f"imported {manifest.bot} {manifest.version} into the S3 registry")
    return manifest


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@contextlib.contextmanager
def _aws(doing: str) -> Iterator[None]:
    """Turn botocore errors into spotbot errors: the caller's mistakes are UsageErrors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = f"{doing}: {error.get('Code', '')}: {error.get('Message')}"
        if error.get("Code") in (
            "ValidationException",
            "ResourceInUse",
            "NoSuchBucket",
            "AccessDenied",
            "AccessDeniedException",
            "ResourceLimitExceeded",
        ):
            raise UsageError(message) from exc
        raise CloudServiceError(message) from exc
    except BotoCoreError as exc:
        raise CloudServiceError(f"{doing}: {exc}") from exc


def upload_model(source: Path, replace: bool = False, s3: Any = None) -> ModelManifest:
    """`spotbot models import PATH --cloud`: a model folder or model.tar.gz into the S3 registry."""

    registry = CloudSettings.from_env().registry(client=s3)
    with tempfile.TemporaryDirectory(prefix="spotbot-import-") as tmp:
        # The local registry's import unpacks and checks a folder or a tarball the same way.
        manifest = ModelRegistry(tmp).import_model(source)
        load_bot_class(manifest.bot)  # a model for a bot that is not installed: UsageError
        with _aws("uploading the model to the registry"):
            return registry.upload(
                Path(tmp) / manifest.bot / manifest.version,  # type: ignore[no-any-return]
                replace=replace,
            )
