"""Notifications and alarms: each job's end to an SNS topic (and e-mail), an alarm when a
cleanup fails, since a failed cleanup can leave an endpoint running, and an alarm when an
endpoint is left in service with no running job (counted by the cleanup function on a
schedule: functions/cleanup.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import AwsContext

#: What the cleanup function publishes (spotbot/aws/job_events.py).
JOB_ENDED_PATTERN = {"source": ["spotbot"], "detail-type": ["Spotbot Job Ended"]}
#: What the cleanup function emits on its schedule (Powertools metrics, dimension "service").
IDLE_ENDPOINTS_METRIC = "IdleEndpoints"


@dataclass(frozen=True)
class NotificationsArgs:
    ctx: AwsContext
    cleanup_function_name: pulumi.Input[str]
    cleanup_function_arn: pulumi.Input[str]
    name_prefix: str
    notify_email: str | None = None
    metrics_namespace: str = "spotbot"
    metrics_service: str = "spotbot"
    idle_check_minutes: int = 15


class Notifications(pulumi.ComponentResource):
    """The topic every job's end goes to, its optional e-mail subscription, and the alarms."""

    topic: aws.sns.Topic
    cleanup_alarm: aws.cloudwatch.MetricAlarm
    idle_endpoint_alarm: aws.cloudwatch.MetricAlarm

    def __init__(
        self, name: str, args: NotificationsArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("spotbot:infra:Notifications", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(
            f"{name}-jobs",
            name=f"{args.name_prefix}-job-events",
            kms_master_key_id="alias/aws/sns",
            opts=child,
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-job-ended",
            name=f"{args.name_prefix}-job-ended",
            description="Every spotbot job's end (succeeded, failed, cancelled), with its counts",
            event_pattern=json.dumps(JOB_ENDED_PATTERN),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-job-ended-topic", rule=rule.name, arn=self.topic.arn, opts=child
        )
        aws.sns.TopicPolicy(
            f"{name}-jobs-policy",
            arn=self.topic.arn,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "JobEventsFromEventBridge",
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sns:Publish",
                            "Resource": self.topic.arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": rule.arn}},
                        }
                    ],
                }
            ),
            opts=child,
        )
        if args.notify_email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.notify_email,
                opts=child,
            )
        # A cleanup that fails after its retries may leave an endpoint in service: someone
        # must look (the state machine's CleanupFailed state says so).
        self.cleanup_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-cleanup-failed",
            name=f"{args.name_prefix}-cleanup-failed",
            alarm_description="A spotbot cleanup failed: check for an endpoint left in service",
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions={"FunctionName": args.cleanup_function_name},
            statistic="Sum",
            period=300,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            opts=child,
        )
        self.idle_endpoint_alarm = self._idle_endpoints(name, args, child)
        self.register_outputs({"topic_arn": self.topic.arn})

    def _idle_endpoints(
        self, name: str, args: NotificationsArgs, child: pulumi.ResourceOptions
    ) -> aws.cloudwatch.MetricAlarm:
        """The cleanup function counts endpoints in service that no unfinished job uses, on a
        schedule; two counts above zero in a row raise the alarm (one could catch an endpoint
        between its job's end and its cleanup). Should the count itself fail, the function's
        errors raise the cleanup-failed alarm."""
        schedule = aws.cloudwatch.EventRule(
            f"{name}-idle-endpoints",
            name=f"{args.name_prefix}-idle-endpoints",
            description="Count spotbot endpoints in service with no running job",
            schedule_expression=f"rate({args.idle_check_minutes} minutes)",
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-idle-endpoints-cleanup",
            rule=schedule.name,
            arn=args.cleanup_function_arn,
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-idle-endpoints-invoke",
            action="lambda:InvokeFunction",
            function=args.cleanup_function_name,
            principal="events.amazonaws.com",
            source_arn=schedule.arn,
            opts=child,
        )
        return aws.cloudwatch.MetricAlarm(
            f"{name}-idle-endpoint",
            name=f"{args.name_prefix}-idle-endpoint",
            alarm_description=(
                "A spotbot SageMaker endpoint is in service with no running job (a cleanup"
                " failed or never ran): delete it, it is billed by the hour"
            ),
            namespace=args.metrics_namespace,
            metric_name=IDLE_ENDPOINTS_METRIC,
            dimensions={"service": args.metrics_service},
            statistic="Maximum",
            period=args.idle_check_minutes * 60,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            opts=child,
        )
