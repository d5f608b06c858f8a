"""The bot images: one definition (images/Dockerfile), built per bot with its build arguments
(images/bots.json) and pushed to the bot's ECR repository by `pulumi up`.

An image's tag is a digest of everything the build reads, so an unchanged tree rebuilds
nothing and a changed one gets a new tag (the repositories are immutable); everything that
runs the image (Batch job definitions, SageMaker models, training jobs) takes the pushed
digest, never a tag.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "images" / "Dockerfile"
BUILD_ARGS_FILE = REPO_ROOT / "images" / "bots.json"
#: What the build context holds (.dockerignore keeps the rest out).
CONTEXT = ("pyproject.toml", "README.md", "spotbot", "training", "images/Dockerfile")
PLATFORM = "linux/amd64"  # the Batch compute environment's and SageMaker's instances


def buildable_bots() -> dict[str, dict[str, str]]:
    """Bot -> its build arguments: the bots this repository can build an image for."""
    data: dict[str, dict[str, str]] = json.loads(BUILD_ARGS_FILE.read_text(encoding="utf-8"))
    return data


def build_args(bot: str) -> dict[str, str]:
    return {"BOT": bot, **buildable_bots()[bot]}


def context_digest(bot: str) -> str:
    """A digest of the files the build reads and of the bot's build arguments."""
    digest = hashlib.sha256(json.dumps(build_args(bot), sort_keys=True).encode())
    for entry in CONTEXT:
        path = REPO_ROOT / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(file.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def built_image(
    name: str, bot: str, repository: aws.ecr.Repository, version: str, parent: pulumi.Resource
) -> pulumi.Output[str]:
    """Build the bot's image, push it to `repository`; its reference by digest."""
    token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id)
    tag = pulumi.Output.concat(repository.repository_url, f":{version}-{context_digest(bot)}")
    image = docker_build.Image(
        name,
        context=docker_build.BuildContextArgs(location=str(REPO_ROOT)),
        dockerfile=docker_build.DockerfileArgs(location=str(DOCKERFILE)),
        build_args=build_args(bot),
        platforms=[docker_build.Platform.LINUX_AMD64],
        push=True,
        tags=[tag],
        registries=[
            docker_build.RegistryArgs(
                address=repository.repository_url,
                username=token.user_name,
                password=token.password,
            )
        ],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return pulumi.Output.concat(repository.repository_url, "@", image.digest)
