"""Policy checks as code: plain functions over the resources a program declares.

A Pulumi policy pack needs the CLI; these run anywhere (the test suite feeds them what a
mocks class recorded) and a policy pack's ``validate`` functions can call them unchanged.
Each resource is a :class:`DeclaredResource`: its type token, logical name and properties
(provider names, camelCase, with JSON documents as strings, as the engine sees them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_SSE = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LAMBDA = "aws:lambda/function:Function"
JOB_DEFINITION = "aws:batch/jobDefinition:JobDefinition"
SAGEMAKER_MODEL = "aws:sagemaker/model:Model"
POLICY_PROPS = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
OPEN_CIDRS = {"0.0.0.0/0", "::/0"}
_PUBLIC_BLOCK_FLAGS = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)


@dataclass(frozen=True)
class DeclaredResource:
    typ: str
    name: str
    props: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    @property
    def label(self) -> str:
        return f"{self.typ}::{self.name}"


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource}: {self.message}"


# --- IAM ----------------------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _documents(resource: DeclaredResource) -> Iterator[dict[str, Any]]:
    prop = POLICY_PROPS.get(resource.typ)
    raw = [resource.props.get(prop)] if prop else []
    if resource.typ == "aws:iam/role:Role":
        raw += [p.get("policy") for p in resource.props.get("inlinePolicies") or []]
    for doc in raw:
        if isinstance(doc, str) and doc:
            yield json.loads(doc)
        elif isinstance(doc, dict):
            yield doc


def allow_statements(
    resources: Iterable[DeclaredResource],
) -> Iterator[tuple[DeclaredResource, dict]]:
    for resource in resources:
        for doc in _documents(resource):
            for stmt in _as_list(doc.get("Statement", [])):
                if stmt.get("Effect") == "Allow":
                    yield resource, stmt


def no_wildcard_action_on_wildcard_resource(
    resources: Sequence[DeclaredResource],
) -> list[Violation]:
    """No Allow of ``*`` (or ``service:*``) actions on ``*`` resources."""
    found = []
    for resource, stmt in allow_statements(resources):
        actions = _as_list(stmt.get("Action", []))
        if "*" not in _as_list(stmt.get("Resource", [])):
            continue
        wild = [a for a in actions if a == "*" or a.endswith(":*")]
        if wild:
            found.append(Violation("iam-no-star", resource.label, f"{wild} on resource *"))
    return found


def no_pass_role_on_wildcard(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """``iam:PassRole`` only on named roles."""
    found = []
    for resource, stmt in allow_statements(resources):
        actions = _as_list(stmt.get("Action", []))
        passes = any(a in ("*", "iam:*", "iam:PassRole", "iam:Pass*") for a in actions)
        targets = _as_list(stmt.get("Resource", []))
        if passes and any(t == "*" or str(t).endswith(":role/*") for t in targets):
            found.append(Violation("iam-passrole", resource.label, f"PassRole on {targets}"))
    return found


# --- storage ------------------------------------------------------------------------------------
def buckets_private_and_encrypted(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Every bucket has a full public access block and a default encryption configuration."""
    blocked = {
        r.props.get("bucket")
        for r in resources
        if r.typ == PUBLIC_ACCESS_BLOCK and all(r.props.get(f) is True for f in _PUBLIC_BLOCK_FLAGS)
    }
    encrypted = {
        r.props.get("bucket")
        for r in resources
        if r.typ == BUCKET_SSE and _sse_algorithms(r) & {"AES256", "aws:kms", "aws:kms:dsse"}
    }
    found = []
    for bucket in (r for r in resources if r.typ == BUCKET):
        keys = {bucket.id, bucket.props.get("bucket")} - {None, ""}
        if not keys & blocked:
            found.append(Violation("bucket-private", bucket.label, "no full public access block"))
        if not keys & encrypted:
            found.append(Violation("bucket-encrypted", bucket.label, "no default encryption"))
        if bucket.props.get("acl") not in (None, "private"):
            found.append(Violation("bucket-private", bucket.label, f"acl {bucket.props['acl']}"))
    return found


def _sse_algorithms(resource: DeclaredResource) -> set[str]:
    rules = resource.props.get("rules") or []
    return {
        (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm", "")
        for rule in rules
    }


# --- network ------------------------------------------------------------------------------------
def no_open_ingress(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """No ingress from 0.0.0.0/0 or ::/0, on any port, in any form of security group rule."""
    found = []
    for r in resources:
        rules: list[dict[str, Any]] = []
        if r.typ == SECURITY_GROUP:
            rules = list(r.props.get("ingress") or [])
        elif r.typ == SG_RULE and r.props.get("type") == "ingress":
            rules = [r.props]
        elif r.typ == SG_INGRESS_RULE:
            rules = [
                {
                    "cidrBlocks": [r.props.get("cidrIpv4")],
                    "ipv6CidrBlocks": [r.props.get("cidrIpv6")],
                }
            ]
        for rule in rules:
            cidrs = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
            if cidrs & OPEN_CIDRS:
                found.append(
                    Violation("sg-open-ingress", r.label, f"ingress from {cidrs & OPEN_CIDRS}")
                )
    return found


# --- logs ---------------------------------------------------------------------------------------
def log_groups_have_retention(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Every log group expires its events; every function logs to such a group."""
    found = []
    retained = set()
    for r in resources:
        if r.typ != LOG_GROUP:
            continue
        if not r.props.get("retentionInDays"):
            found.append(Violation("log-retention", r.label, "no retentionInDays"))
        else:
            retained.add(r.props.get("name"))
    for r in resources:
        if r.typ == LAMBDA:
            group = (r.props.get("loggingConfig") or {}).get("logGroup") or (
                f"/aws/lambda/{r.props.get('name')}"
            )
            if group not in retained:
                found.append(Violation("log-retention", r.label, f"logs to unmanaged {group}"))
    return found


# --- images -------------------------------------------------------------------------------------
_DIGEST_REF = re.compile(r"@sha256:[0-9a-f]{64}$")
_TAGGED_REF = re.compile(r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def image_reference_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None: by digest, or an explicit non-latest tag."""
    if _DIGEST_REF.search(image):
        return None
    last = image.rsplit("/", 1)[-1]
    if not _TAGGED_REF.search(last):
        return "no tag or digest (means :latest)"
    if last.endswith(":latest"):
        return "tag :latest"
    return None


def no_latest_images(resources: Sequence[DeclaredResource]) -> list[Violation]:
    found = []
    for r in resources:
        images: list[str] = []
        if r.typ == JOB_DEFINITION and r.props.get("containerProperties"):
            images.append(json.loads(r.props["containerProperties"]).get("image", ""))
        elif r.typ == LAMBDA and r.props.get("imageUri"):
            images.append(r.props["imageUri"])
        elif r.typ == SAGEMAKER_MODEL:
            containers = [r.props.get("primaryContainer") or {}, *(r.props.get("containers") or [])]
            images += [c["image"] for c in containers if c.get("image")]
        for image in images:
            problem = image_reference_problem(image)
            if problem:
                found.append(Violation("image-pinned", r.label, f"{image}: {problem}"))
    return found


CHECKS: tuple[Callable[[Sequence[DeclaredResource]], list[Violation]], ...] = (
    no_wildcard_action_on_wildcard_resource,
    no_pass_role_on_wildcard,
    buckets_private_and_encrypted,
    no_open_ingress,
    log_groups_have_retention,
    no_latest_images,
)


def check_all(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Every check over every resource; an empty list means compliant."""
    return [v for check in CHECKS for v in check(resources)]
