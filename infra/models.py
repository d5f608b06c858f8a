"""Models: an ECR repository per bot image, image references by digest, the SageMaker role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam, images
from infra.iam import AwsContext


@dataclass(frozen=True)
class ModelsArgs:
    ctx: AwsContext
    bots: Sequence[str]
    artifacts_bucket_arn: pulumi.Input[str]
    models_prefix: str
    image_digests: Mapping[str, str]
    images: Mapping[str, str]
    image_tag: str
    log_retention_days: int
    name_prefix: str = "spotbot"


class Models(pulumi.ComponentResource):
    """Where bot images live and what SageMaker may do when it serves them."""

    repositories: dict[str, aws.ecr.Repository]
    custom_repository: aws.ecr.Repository
    image_uris: dict[str, pulumi.Output[str]]
    sagemaker_role: aws.iam.Role

    def __init__(self, name: str, args: ModelsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Models", name, None, opts)
        self._name = name
        ctx = args.ctx
        self.repositories = {
            bot: aws.ecr.Repository(
                f"{name}-{bot}",
                name=f"{args.name_prefix}/{bot}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "AES256"}],
                opts=pulumi.ResourceOptions(parent=self),
            )
            for bot in args.bots
        }
        # Where users push the images of the bots they register through the API (BYOB).
        self.custom_repository = aws.ecr.Repository(
            f"{name}-custom-bots",
            name=f"{args.name_prefix}/custom-bots",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image_uris = {bot: self._image_uri(bot, args) for bot in args.bots}
        self.sagemaker_role = iam.role(
            f"{name}-sagemaker",
            ctx,
            services=["sagemaker"],
            statements=[
                iam.statement(["ecr:GetAuthorizationToken"], ["*"]),
                iam.statement(
                    [
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchCheckLayerAvailability",
                    ],
                    # The custom bots' too: a custom bot's job may run in endpoint mode.
                    [r.arn for r in (*self.repositories.values(), self.custom_repository)],
                ),
                iam.statement(
                    ["s3:GetObject"],
                    [pulumi.Output.concat(args.artifacts_bucket_arn, "/", args.models_prefix, "*")],
                ),
                iam.statement(
                    [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    [ctx.arn("logs", "log-group:/aws/sagemaker/*")],
                ),
                iam.statement(
                    ["cloudwatch:PutMetricData"],
                    ["*"],
                    condition={
                        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}
                    },
                ),
            ],
            parent=self,
            description="SageMaker endpoints serving spotbot bots",
        )
        self.register_outputs(
            {
                "repository_urls": {b: r.repository_url for b, r in self.repositories.items()},
                "custom_repository_url": self.custom_repository.repository_url,
                "sagemaker_role_arn": self.sagemaker_role.arn,
            }
        )

    def _image_uri(self, bot: str, args: ModelsArgs) -> pulumi.Output[str]:
        """Always by digest: a prebuilt image the stack names (``images`` or ``imageDigests``),
        else the image this program builds from images/Dockerfile and pushes."""
        if bot in args.images:
            return pulumi.Output.from_input(args.images[bot])
        repository = self.repositories[bot]
        if bot in args.image_digests:
            return pulumi.Output.concat(repository.repository_url, "@", args.image_digests[bot])
        return images.built_image(
            f"{self._name}-{bot}-image", bot, repository, args.image_tag, self
        )
