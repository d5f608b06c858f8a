"""Notifications and alarms: each job's end to an SNS topic (and e-mail), and an alarm when
a cleanup fails, since a failed cleanup can leave an endpoint running."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import AwsContext

#: What the cleanup function publishes (spotbot/aws/job_events.py).
JOB_ENDED_PATTERN = {"source": ["spotbot"], "detail-type": ["Spotbot Job Ended"]}


@dataclass(frozen=True)
class NotificationsArgs:
    ctx: AwsContext
    cleanup_function_name: pulumi.Input[str]
    name_prefix: str
    notify_email: str | None = None


class Notifications(pulumi.ComponentResource):
    """The topic every job's end goes to, its optional e-mail subscription, and the alarms."""

    topic: aws.sns.Topic
    cleanup_alarm: aws.cloudwatch.MetricAlarm

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
        self.register_outputs({"topic_arn": self.topic.arn})
