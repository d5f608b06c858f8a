"""Network: where Batch instances run, from config, and their security group (egress only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class NetworkArgs:
    vpc_id: str | None = None
    subnet_ids: Sequence[str] = ()


class Network(pulumi.ComponentResource):
    """The VPC and subnets from config (or the account's default VPC), and a worker SG.

    Workers only call out (ECR, S3, OpenSearch, SageMaker): the security group has no ingress
    rule at all, so a default VPC with public subnets does not expose them.
    """

    vpc_id: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    security_group: aws.ec2.SecurityGroup

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Network", name, None, opts)
        if args.vpc_id:
            vpc_id: str = args.vpc_id
            subnet_ids: list[str] = list(args.subnet_ids)
        else:
            vpc_id = aws.ec2.get_vpc(default=True).id
            subnet_ids = list(
                aws.ec2.get_subnets(filters=[{"name": "vpc-id", "values": [vpc_id]}]).ids
            )
        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.subnet_ids = pulumi.Output.from_input(subnet_ids)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-workers",
            description="spotbot Batch workers: outbound HTTPS only, no inbound",
            vpc_id=vpc_id,
            ingress=[],
            egress=[
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "ipv6_cidr_blocks": ["::/0"],
                    "description": "HTTPS to AWS APIs, ECR and the search domain",
                },
                {
                    "protocol": "udp",
                    "from_port": 53,
                    "to_port": 53,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": "DNS",
                },
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"vpc_id": self.vpc_id, "security_group_id": self.security_group.id})
