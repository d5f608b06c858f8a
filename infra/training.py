"""Training: the role SageMaker training jobs run as, and the policy for whoever starts them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.iam import AwsContext
from spotbot.aws.training_jobs import JOB_NAME_PREFIX, TRAINING_PREFIX


@dataclass(frozen=True)
class TrainingArgs:
    ctx: AwsContext
    artifacts_bucket_arn: pulumi.Input[str]
    models_prefix: str
    repository_arns: Sequence[pulumi.Input[str]]
    name_prefix: str = "spotbot"


class Training(pulumi.ComponentResource):
    """Least privilege for `spotbot train --cloud`: per-job data, checkpoints and output prefixes
    under training/ in the artifacts bucket (layout: spotbot.aws.training_jobs)."""

    role: aws.iam.Role
    starter_policy: aws.iam.Policy

    def __init__(self, name: str, args: TrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Training", name, None, opts)
        ctx, bucket = args.ctx, args.artifacts_bucket_arn

        def objects(pattern: str) -> pulumi.Output[str]:
            return pulumi.Output.concat(bucket, "/", pattern)

        self.role = iam.role(
            f"{name}-role",
            ctx,
            services=["sagemaker"],
            statements=[
                iam.statement(["s3:GetObject"], [objects(f"{TRAINING_PREFIX}*/data/*"),
                                                 objects(f"{args.models_prefix}*")],
                              sid="ReadTrainingDataAndBaseModels"),
                iam.statement(["s3:ListBucket"], [bucket], sid="ListTrainingPrefixes",
                              condition={"StringLike": {"s3:prefix": [
                                  f"{TRAINING_PREFIX}*", f"{args.models_prefix}*"]}}),
                iam.statement(["s3:GetObject", "s3:PutObject"],
                              [objects(f"{TRAINING_PREFIX}*/checkpoints/*")], sid="Checkpoints"),
                iam.statement(["s3:PutObject"], [objects(f"{TRAINING_PREFIX}*/output/*")],
                              sid="ModelOutput"),
                iam.statement(["ecr:GetAuthorizationToken"], ["*"], sid="EcrToken"),
                iam.statement(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                               "ecr:BatchCheckLayerAvailability"],
                              list(args.repository_arns), sid="PullBotImages"),
                iam.statement(["logs:CreateLogGroup", "logs:CreateLogStream",
                               "logs:PutLogEvents", "logs:DescribeLogStreams"],
                              [ctx.arn("logs", "log-group:/aws/sagemaker/TrainingJobs*")],
                              sid="Logs"),
                iam.statement(["cloudwatch:PutMetricData"], ["*"], sid="Metrics", condition={
                    "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}),
            ],
            parent=self,
            description="SageMaker training jobs of spotbot bots (managed Spot)",
        )
        jobs = ctx.arn("sagemaker", f"training-job/{JOB_NAME_PREFIX}*")
        # Attached to the people or CI roles that run `spotbot train --cloud`.
        self.starter_policy = aws.iam.Policy(
            f"{name}-starter",
            description="Start and follow spotbot training jobs; pass only the training role",
            policy=pulumi.Output.json_dumps(iam.document([
                iam.statement(["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                               "sagemaker:StopTrainingJob", "sagemaker:AddTags"], [jobs],
                              sid="TrainingJobs"),
                iam.statement(["iam:PassRole"], [self.role.arn], sid="PassTrainingRole",
                              condition={"StringEquals": {
                                  "iam:PassedToService": ctx.service_principal("sagemaker")}}),
                iam.statement(["s3:PutObject", "s3:GetObject"],
                              [objects(f"{TRAINING_PREFIX}*"), objects(f"{args.models_prefix}*")],
                              sid="StageDataAndImportModels"),
                iam.statement(["s3:ListBucket"], [bucket], sid="ListTrainingAndModels",
                              condition={"StringLike": {"s3:prefix": [
                                  f"{TRAINING_PREFIX}*", f"{args.models_prefix}*"]}}),
            ])),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"training_role_arn": self.role.arn,
                               "training_starter_policy_arn": self.starter_policy.arn})
