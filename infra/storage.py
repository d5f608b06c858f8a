"""Storage: the artifacts bucket (model registry, results): private, encrypted, TLS-only."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import AwsContext

MODELS_PREFIX = "models/"
TMP_PREFIX = "tmp/"


@dataclass(frozen=True)
class StorageArgs:
    ctx: AwsContext
    kms_key_arn: str | None = None
    tmp_expiry_days: int = 7
    noncurrent_expiry_days: int = 30


class Storage(pulumi.ComponentResource):
    """The artifacts bucket with its guard rails: public access block, SSE, TLS-only, versioning."""

    bucket: aws.s3.Bucket

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(f"{name}-artifacts", force_destroy=False, opts=child)
        bucket_id = self.bucket.id
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-artifacts-public-access",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-artifacts-ownership",
            bucket=bucket_id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        sse = (
            {"sse_algorithm": "aws:kms", "kms_master_key_id": args.kms_key_arn}
            if args.kms_key_arn
            else {"sse_algorithm": "AES256"}
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-artifacts-sse",
            bucket=bucket_id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": sse,
                    "bucket_key_enabled": bool(args.kms_key_arn),
                }
            ],
            opts=child,
        )
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-artifacts-versioning",
            bucket=bucket_id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-artifacts-lifecycle",
            bucket=bucket_id,
            rules=[
                {
                    "id": "expire-tmp",
                    "status": "Enabled",
                    "filter": {"prefix": TMP_PREFIX},
                    "expiration": {"days": args.tmp_expiry_days},
                },
                {
                    "id": "old-versions-and-uploads",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": args.noncurrent_expiry_days
                    },
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                },
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
        )
        self.policy = aws.s3.BucketPolicy(
            f"{name}-artifacts-tls-only",
            bucket=bucket_id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [
                                self.bucket.arn,
                                pulumi.Output.concat(self.bucket.arn, "/*"),
                            ],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            ),
            # A policy put before the public access block races it; order them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )
        self.register_outputs({"bucket": self.bucket.bucket, "arn": self.bucket.arn})
