"""Search: the Amazon OpenSearch Service domain of the task index, IAM-only, encrypted, HTTPS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import SearchSettings
from infra.iam import AwsContext

TLS_POLICY = "Policy-Min-TLS-1-2-PFS-2023-10"


@dataclass(frozen=True)
class SearchArgs:
    ctx: AwsContext
    settings: SearchSettings
    domain_name: str
    kms_key_arn: str | None = None


class Search(pulumi.ComponentResource):
    """An OpenSearch domain; :meth:`allow` grants access to this stack's roles, and only them."""

    domain: aws.opensearch.Domain

    def __init__(self, name: str, args: SearchArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Search", name, None, opts)
        self._name = name
        self._ctx = args.ctx
        s = args.settings
        multi_az = s.instance_count > 1 and s.instance_count % 2 == 0
        self.domain = aws.opensearch.Domain(
            f"{name}-domain",
            domain_name=args.domain_name,
            engine_version=s.engine_version,
            cluster_config={
                "instance_type": s.instance_type,
                "instance_count": s.instance_count,
                "zone_awareness_enabled": multi_az,
                "zone_awareness_config": {"availability_zone_count": 2} if multi_az else None,
                "dedicated_master_enabled": s.dedicated_master,
                "dedicated_master_count": 3 if s.dedicated_master else None,
                "dedicated_master_type": s.instance_type if s.dedicated_master else None,
            },
            ebs_options={"ebs_enabled": True, "volume_type": "gp3", "volume_size": s.volume_gib},
            encrypt_at_rest={"enabled": True, "kms_key_id": args.kms_key_arn},
            node_to_node_encryption={"enabled": True},
            domain_endpoint_options={"enforce_https": True, "tls_security_policy": TLS_POLICY},
            advanced_options={"rest.action.multi_allow_explicit_index": "true"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.endpoint = pulumi.Output.concat("https://", self.domain.endpoint)
        self.register_outputs({"endpoint": self.endpoint, "arn": self.domain.arn})

    def allow(self, principals: Sequence[pulumi.Input[str]]) -> aws.opensearch.DomainPolicy:
        """The domain's access policy: HTTP actions for exactly these role ARNs."""
        if not principals:
            raise ValueError("the search domain needs at least one principal")
        return aws.opensearch.DomainPolicy(
            f"{self._name}-access",
            domain_name=self.domain.domain_name,
            access_policies=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": list(principals)},
                            "Action": [
                                "es:ESHttpGet",
                                "es:ESHttpHead",
                                "es:ESHttpPost",
                                "es:ESHttpPut",
                                "es:ESHttpDelete",
                                "es:ESHttpPatch",
                            ],
                            "Resource": pulumi.Output.concat(self.domain.arn, "/*"),
                        }
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def http_statement(self) -> dict:
        """The identity-policy half: a role may call the domain's HTTP API."""
        return {
            "Effect": "Allow",
            "Action": [
                "es:ESHttpGet",
                "es:ESHttpHead",
                "es:ESHttpPost",
                "es:ESHttpPut",
                "es:ESHttpDelete",
                "es:ESHttpPatch",
            ],
            "Resource": [pulumi.Output.concat(self.domain.arn, "/*")],
        }
