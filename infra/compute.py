"""Compute: Batch on EC2 Spot - compute environments, the job queue, one job definition per bot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.config import BotResources
from infra.iam import AwsContext, Statement
from spotbot.aws.job_definitions import WORKER_RETRY_RULES
from spotbot.core import envnames

#: Batch retries a job whose host went away (Spot reclaim, host failure) and one that the
#: environment stopped (S3 or the index failing past their retries: exit 75), never a code
#: failure: the rules custom bots' definitions get too, in the provider's casing.
_SNAKE = {
    "onStatusReason": "on_status_reason",
    "onExitCode": "on_exit_code",
    "onReason": "on_reason",
}
RETRY_RULES = [{_SNAKE.get(k, k): v for k, v in rule.items()} for rule in WORKER_RETRY_RULES]


@dataclass(frozen=True)
class ComputeArgs:
    ctx: AwsContext
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_id: pulumi.Input[str]
    images: Mapping[str, pulumi.Input[str]]
    resources: Mapping[str, BotResources]
    environment: Mapping[str, pulumi.Input[str]]
    job_statements: Sequence[Statement]
    max_vcpus: int = 256
    instance_types: Sequence[str] = ("c6i", "m6i")
    allocation_strategy: str = "SPOT_PRICE_CAPACITY_OPTIMIZED"
    on_demand_max_vcpus: int = 0
    job_attempts: int = 3
    job_timeout_seconds: int = 86_400
    log_retention_days: int = 30
    name_prefix: str = "spotbot"
    tags: Mapping[str, str] = field(default_factory=dict)


class Compute(pulumi.ComponentResource):
    """A Spot compute environment (and an optional on-demand one behind it), a queue, job defs."""

    queue: aws.batch.JobQueue
    job_definitions: dict[str, aws.batch.JobDefinition]
    job_role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup

    def __init__(self, name: str, args: ComputeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Compute", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        instance_role = iam.role(
            f"{name}-instance",
            ctx,
            services=["ec2"],
            managed=[ctx.managed_policy("service-role/AmazonEC2ContainerServiceforEC2Role")],
            parent=self,
            description="ECS agent on spotbot Batch instances",
            source_account_condition=False,
        )
        profile = aws.iam.InstanceProfile(f"{name}-instance", role=instance_role.name, opts=child)
        environments = [
            self._environment(f"{name}-spot", "SPOT", args.max_vcpus, args, profile.arn)
        ]
        if args.on_demand_max_vcpus:
            environments.append(
                self._environment(
                    f"{name}-ondemand", "EC2", args.on_demand_max_vcpus, args, profile.arn
                )
            )
        self.compute_environments = environments
        self.queue = aws.batch.JobQueue(
            f"{name}-queue",
            name=f"{args.name_prefix}-workers",
            state="ENABLED",
            priority=1,
            compute_environment_orders=[
                {"order": i, "compute_environment": env.arn} for i, env in enumerate(environments)
            ],
            opts=child,
        )
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/batch/{args.name_prefix}-workers",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        self.execution_role = iam.role(
            f"{name}-execution",
            ctx,
            services=["ecs-tasks"],
            managed=[ctx.managed_policy("service-role/AmazonECSTaskExecutionRolePolicy")],
            parent=self,
            description="pulls spotbot images and writes worker logs",
        )
        self.job_role = iam.role(
            f"{name}-job",
            ctx,
            services=["ecs-tasks"],
            statements=list(args.job_statements),
            parent=self,
            description="what a spotbot worker container may do",
        )
        self.job_definitions = {
            bot: self._job_definition(name, bot, image, args)
            for bot, image in sorted(args.images.items())
        }
        #: Custom bots' definitions are registered by the api function under this prefix.
        self.custom_definition_prefix = f"{args.name_prefix}-custom-"
        self.register_outputs(
            {
                "queue_arn": self.queue.arn,
                "job_definitions": {b: d.arn for b, d in self.job_definitions.items()},
            }
        )

    def _environment(
        self, name: str, kind: str, max_vcpus: int, args: ComputeArgs, profile_arn: Any
    ) -> aws.batch.ComputeEnvironment:
        return aws.batch.ComputeEnvironment(
            name,
            type="MANAGED",
            state="ENABLED",
            compute_resources={
                "type": kind,
                "allocation_strategy": (
                    args.allocation_strategy if kind == "SPOT" else "BEST_FIT_PROGRESSIVE"
                ),
                "min_vcpus": 0,
                "max_vcpus": max_vcpus,
                "instance_types": list(args.instance_types),
                "subnets": args.subnet_ids,
                "security_group_ids": [args.security_group_id],
                "instance_role": profile_arn,
                "ec2_configurations": [{"image_type": "ECS_AL2023"}],
                "tags": {"spotbot:capacity": kind.lower()},
            },
            # Batch replaces an environment on most changes; let the queue move first.
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _job_definition(
        self, name: str, bot: str, image: pulumi.Input[str], args: ComputeArgs
    ) -> aws.batch.JobDefinition:
        res = args.resources[bot]
        requirements = [
            {"type": "VCPU", "value": str(res.vcpus)},
            {"type": "MEMORY", "value": str(res.memory_mib)},
        ]
        if res.gpus:
            requirements.append({"type": "GPU", "value": str(res.gpus)})
        environment = [{"name": k, "value": v} for k, v in sorted(args.environment.items())]
        container = {
            "image": image,
            "command": ["work"],
            "jobRoleArn": self.job_role.arn,
            "executionRoleArn": self.execution_role.arn,
            "resourceRequirements": requirements,
            "environment": [*environment, {"name": envnames.BOT, "value": bot}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group.name,
                    "awslogs-region": args.ctx.region,
                    "awslogs-stream-prefix": bot,
                },
            },
            "readonlyRootFilesystem": False,
            "privileged": False,
            "user": "1000",
        }
        return aws.batch.JobDefinition(
            f"{name}-{bot}",
            name=f"{args.name_prefix}-{bot}",
            type="container",
            platform_capabilities=["EC2"],
            container_properties=pulumi.Output.json_dumps(container),
            retry_strategy={
                "attempts": args.job_attempts,
                "evaluate_on_exits": RETRY_RULES,
            },
            timeout={"attempt_duration_seconds": args.job_timeout_seconds},
            propagate_tags=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
