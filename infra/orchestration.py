"""Orchestration: the tagging and retry state machines, their role, logs, tracing, cleanup rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.iam import AwsContext
from workflows.tagging import TaggingRefs, build_definition, build_retry_definition

#: The managed rule Step Functions uses to follow Batch jobs for ``.sync``.
BATCH_SYNC_RULE = "rule/StepFunctionsGetEventsForBatchJobsRule"
#: Functions the machines invoke (the api function starts them, it is not invoked by them).
INVOKED = ("init", "scan", "endpoint", "finalize", "cleanup", "requeue")


@dataclass(frozen=True)
class OrchestrationArgs:
    ctx: AwsContext
    function_arns: Mapping[str, pulumi.Input[str]]
    cleanup_function_name: pulumi.Input[str]
    job_queue_arn: pulumi.Input[str]
    job_definition_arns: Mapping[str, pulumi.Input[str]]
    tagging_name: str
    retry_name: str
    endpoint_name_prefix: str
    log_retention_days: int
    endpoint_poll_seconds: int = 30
    max_concurrent_arrays: int = 4


def refs_output(args: OrchestrationArgs) -> pulumi.Output[TaggingRefs]:
    """The refs of both machines, once every ARN is known (a pure apply: no resources in it)."""
    bots = sorted(args.job_definition_arns)

    def make(values: dict[str, Any]) -> TaggingRefs:
        return TaggingRefs(
            partition=args.ctx.partition,
            init_function_arn=values["init"],
            scan_function_arn=values["scan"],
            endpoint_function_arn=values["endpoint"],
            finalize_function_arn=values["finalize"],
            cleanup_function_arn=values["cleanup"],
            requeue_function_arn=values["requeue"],
            job_queue_arn=values["queue"],
            job_definition_arns={bot: values[f"jd:{bot}"] for bot in bots},
            endpoint_poll_seconds=args.endpoint_poll_seconds,
            max_concurrent_arrays=args.max_concurrent_arrays,
        )

    inputs = {h: args.function_arns[h] for h in INVOKED}
    inputs["queue"] = args.job_queue_arn
    inputs.update({f"jd:{bot}": args.job_definition_arns[bot] for bot in bots})
    return pulumi.Output.all(**inputs).apply(make)


class Orchestration(pulumi.ComponentResource):
    """Two Standard state machines sharing one role (limited to what they call) and log group."""

    tagging: aws.sfn.StateMachine
    retry: aws.sfn.StateMachine
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup

    def __init__(
        self, name: str, args: OrchestrationArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("spotbot:infra:Orchestration", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/vendedlogs/states/{args.tagging_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        self.role = iam.role(
            f"{name}-role",
            ctx,
            services=["states"],
            statements=self.statements(args),
            parent=self,
            description="spotbot state machines",
        )
        refs = refs_output(args)
        self.tagging = self._machine(f"{name}-tagging", args.tagging_name, refs, build_definition)
        self.retry = self._machine(f"{name}-retry", args.retry_name, refs, build_retry_definition)
        # An execution stopped or timed out runs no state: this rule still runs cleanup.
        rule = aws.cloudwatch.EventRule(
            f"{name}-aborted",
            description="cleanup for spotbot executions that were stopped or timed out",
            event_pattern=pulumi.Output.json_dumps(
                {
                    "source": ["aws.states"],
                    "detail-type": ["Step Functions Execution Status Change"],
                    "detail": {
                        "status": ["ABORTED", "TIMED_OUT"],
                        "stateMachineArn": [self.tagging.arn, self.retry.arn],
                    },
                }
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-aborted-cleanup",
            rule=rule.name,
            arn=args.function_arns["cleanup"],
            retry_policy={"maximum_retry_attempts": 20, "maximum_event_age_in_seconds": 86_400},
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-aborted-invoke",
            action="lambda:InvokeFunction",
            function=args.cleanup_function_name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=child,
        )
        self.register_outputs({"tagging_arn": self.tagging.arn, "retry_arn": self.retry.arn})

    def _machine(
        self,
        name: str,
        machine_name: str,
        refs: pulumi.Output[TaggingRefs],
        build: Callable[[TaggingRefs], dict[str, Any]],
    ) -> aws.sfn.StateMachine:
        return aws.sfn.StateMachine(
            name,
            name=machine_name,
            type="STANDARD",
            role_arn=self.role.arn,
            definition=pulumi.Output.json_dumps(refs.apply(build)),
            logging_configuration={
                "level": "ALL",
                "include_execution_data": True,
                "log_destination": pulumi.Output.concat(self.log_group.arn, ":*"),
            },
            tracing_configuration={"enabled": True},
            opts=pulumi.ResourceOptions(parent=self),
        )

    @staticmethod
    def statements(args: OrchestrationArgs) -> list[iam.Statement]:
        """Exactly what the two definitions call, and the log/trace delivery they need."""
        ctx = args.ctx
        functions = [args.function_arns[h] for h in INVOKED]
        return [
            iam.statement(
                ["lambda:InvokeFunction"],
                [*functions, *[pulumi.Output.concat(f, ":*") for f in functions]],
                sid="InvokeJobFunctions",
            ),
            iam.statement(
                ["batch:SubmitJob"],
                [args.job_queue_arn, *args.job_definition_arns.values()],
                sid="SubmitWorkerArrays",
            ),
            # DescribeJobs has no resource-level permissions; TerminateJob is scoped to jobs.
            iam.statement(["batch:DescribeJobs"], ["*"], sid="FollowWorkerArrays"),
            iam.statement(["batch:TerminateJob"], [ctx.arn("batch", "job/*")], sid="StopArrays"),
            iam.statement(
                ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                [ctx.arn("events", BATCH_SYNC_RULE)],
                sid="BatchSyncRule",
            ),
            iam.statement(
                ["sagemaker:DescribeEndpoint"],
                [ctx.arn("sagemaker", f"endpoint/{args.endpoint_name_prefix}-*")],
                sid="PollEndpoint",
            ),
            # Log delivery and X-Ray actions support no resource-level permissions.
            iam.statement(
                [
                    "logs:CreateLogDelivery",
                    "logs:GetLogDelivery",
                    "logs:UpdateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:DescribeResourcePolicies",
                    "logs:DescribeLogGroups",
                ],
                ["*"],
                sid="DeliverLogs",
            ),
            iam.statement(
                [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                ],
                ["*"],
                sid="Trace",
            ),
        ]
