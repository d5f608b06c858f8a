"""IAM helpers: policy documents as dicts, roles with inline policies, the account context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

Statement = dict[str, Any]


@dataclass(frozen=True)
class AwsContext:
    """Partition, region and account of the provider: ARNs are built from these, never typed."""

    partition: str
    region: str
    account_id: str
    dns_suffix: str

    @classmethod
    def lookup(cls) -> AwsContext:
        partition = aws.get_partition()
        return cls(
            partition=partition.partition,
            region=aws.get_region().region,
            account_id=aws.get_caller_identity().account_id,
            dns_suffix=partition.dns_suffix,
        )

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return ":".join(
            [
                "arn",
                self.partition,
                service,
                self.region if region else "",
                self.account_id if account else "",
                resource,
            ]
        )

    def managed_policy(self, name: str) -> str:
        return f"arn:{self.partition}:iam::aws:policy/{name}"

    def service_principal(self, service: str) -> str:
        # Service principals are <service>.amazonaws.com in every partition, China included.
        return f"{service}.amazonaws.com"


def statement(
    actions: Sequence[str],
    resources: Sequence[Any] | Any,
    *,
    sid: str | None = None,
    condition: dict[str, Any] | None = None,
) -> Statement:
    """An Allow statement; resources may be Outputs (serialised by Output.json_dumps)."""
    if not actions:
        raise ValueError("a statement needs actions")
    body: Statement = {"Effect": "Allow", "Action": list(actions), "Resource": resources}
    if sid:
        body["Sid"] = sid
    if condition:
        body["Condition"] = condition
    return body


def document(statements: Sequence[Statement]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def assume_role_policy(ctx: AwsContext, *services: str) -> pulumi.Output[str]:
    principals = [ctx.service_principal(s) for s in services]
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": principals if len(principals) > 1 else principals[0]},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
                }
            ],
        }
    )


def role(
    name: str,
    ctx: AwsContext,
    *,
    services: Sequence[str],
    statements: Sequence[Statement] = (),
    managed: Sequence[str] = (),
    parent: pulumi.Resource,
    description: str = "",
    source_account_condition: bool = True,
) -> aws.iam.Role:
    """A role assumable by ``services`` with one inline policy of ``statements``."""
    assume = (
        assume_role_policy(ctx, *services)
        if source_account_condition
        else pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": [ctx.service_principal(s) for s in services]},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
    )
    created = aws.iam.Role(
        name,
        assume_role_policy=assume,
        description=description or None,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    if statements:
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=created.id,
            policy=pulumi.Output.json_dumps(document(statements)),
            opts=pulumi.ResourceOptions(parent=created),
        )
    for index, policy_arn in enumerate(managed):
        aws.iam.RolePolicyAttachment(
            f"{name}-managed-{index}",
            role=created.name,
            policy_arn=policy_arn,
            opts=pulumi.ResourceOptions(parent=created),
        )
    return created


def log_statement(log_group_arn: pulumi.Input[str]) -> Statement:
    """Write to one log group's streams, nothing else."""
    return statement(
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        [pulumi.Output.concat(log_group_arn, ":*")],
    )


def xray_statement() -> Statement:
    # X-Ray's write actions have no resource-level permissions: "*" is the only resource.
    return statement(["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"])
