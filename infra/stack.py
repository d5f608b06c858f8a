"""The whole deployment from settings: components wired together, outputs returned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra import iam
from infra.api import Api, ApiArgs
from infra.compute import Compute, ComputeArgs
from infra.config import SpotbotSettings
from infra.functions import Functions, FunctionsArgs, FunctionSpec
from infra.iam import AwsContext, Statement
from infra.models import Models, ModelsArgs
from infra.network import Network, NetworkArgs
from infra.notifications import Notifications, NotificationsArgs
from infra.orchestration import Orchestration, OrchestrationArgs
from infra.search import Search, SearchArgs
from infra.storage import MODELS_PREFIX, Storage, StorageArgs
from infra.training import Training, TrainingArgs
from spotbot.core import envnames

#: The functions' Powertools metrics (namespace, "service" dimension), which alarms watch.
METRICS_NAMESPACE = METRICS_SERVICE = "spotbot"


@dataclass(frozen=True)
class Names:
    """Physical names, unique per stack, derived once."""

    base: str

    @classmethod
    def of(cls, prefix: str, stack: str) -> Names:
        return cls(f"{prefix}-{stack}".lower()[:40].rstrip("-"))

    @property
    def domain(self) -> str:  # OpenSearch: 3-28 characters
        return self.base[:28].rstrip("-")

    @property
    def tagging(self) -> str:
        return f"{self.base}-tagging"

    @property
    def retry(self) -> str:
        return f"{self.base}-retry"


@dataclass
class Deployment:
    """The components of one stack and its outputs (tests reach resources through it)."""

    storage: Storage
    network: Network
    search: Search
    models: Models
    compute: Compute
    functions: Functions
    orchestration: Orchestration
    api: Api
    outputs: dict[str, Any]
    training: Training | None = None
    notifications: Notifications | None = None


def build(settings: SpotbotSettings, ctx: AwsContext | None = None) -> Deployment:
    """Declare every resource of the stack."""
    ctx = ctx or AwsContext.lookup()
    names = Names.of(settings.name_prefix, pulumi.get_stack())
    storage = Storage("storage", StorageArgs(ctx=ctx, kms_key_arn=settings.kms_key_arn))
    network = Network(
        "network", NetworkArgs(vpc_id=settings.vpc_id, subnet_ids=settings.subnet_ids)
    )
    search = Search(
        "search",
        SearchArgs(
            ctx=ctx,
            settings=settings.search,
            domain_name=names.domain,
            kms_key_arn=settings.kms_key_arn,
        ),
    )
    models = Models(
        "models",
        ModelsArgs(
            ctx=ctx,
            bots=settings.bots,
            artifacts_bucket_arn=storage.bucket.arn,
            models_prefix=MODELS_PREFIX,
            image_digests=settings.image_digests,
            images=settings.images,
            image_tag=settings.image_tag,
            log_retention_days=settings.log_retention_days,
            name_prefix=names.base,
        ),
    )
    training = Training(
        "training",
        TrainingArgs(
            ctx=ctx,
            artifacts_bucket_arn=storage.bucket.arn,
            models_prefix=MODELS_PREFIX,
            repository_arns=[r.arn for r in models.repositories.values()],
            name_prefix=names.base,
        ),
    )
    buckets = _BucketAccess(ctx, storage.bucket.arn, settings.allowed_buckets)
    endpoint_arns = _EndpointArns(ctx, names.base)
    environment: dict[str, pulumi.Input[str]] = {
        envnames.OPENSEARCH_ENDPOINT: search.endpoint,
        envnames.INDEX_PREFIX: names.base,
        envnames.ARTIFACTS_BUCKET: storage.bucket.bucket,
        envnames.MODELS_PREFIX: MODELS_PREFIX,
        envnames.ALLOWED_BUCKETS: pulumi.Output.all(
            storage.bucket.bucket, *settings.allowed_buckets
        ).apply(lambda names_: ",".join(names_)),
        envnames.ENDPOINT_NAME_PREFIX: names.base,
    }
    compute = Compute(
        "compute",
        ComputeArgs(
            ctx=ctx,
            subnet_ids=network.subnet_ids,
            security_group_id=network.security_group.id,
            images=models.image_uris,
            resources={b: settings.resources_of(b) for b in settings.bots},
            environment=environment,
            job_statements=[
                *buckets.read(),
                *buckets.write(),
                search.http_statement(),
                iam.statement(["sagemaker:InvokeEndpoint"], [endpoint_arns.endpoints]),
            ],
            max_vcpus=settings.max_vcpus,
            instance_types=settings.instance_types,
            allocation_strategy=settings.allocation_strategy,
            on_demand_max_vcpus=settings.on_demand_max_vcpus if settings.on_demand_fallback else 0,
            job_attempts=settings.job_attempts,
            job_timeout_seconds=settings.job_timeout_hours * 3600,
            log_retention_days=settings.log_retention_days,
            name_prefix=names.base,
        ),
    )
    custom_bots = _CustomBots(ctx, compute, models, settings)
    tagging_arn = ctx.arn("states", f"stateMachine:{names.tagging}")
    retry_arn = ctx.arn("states", f"stateMachine:{names.retry}")
    es = search.http_statement()
    terminate = [
        iam.statement(["batch:ListJobs"], ["*"]),  # ListJobs has no resource-level permissions
        iam.statement(["batch:TerminateJob"], [ctx.arn("batch", "job/*")]),
    ]
    specs = {
        "api": FunctionSpec(
            statements=[
                es,
                *terminate,
                iam.statement(["states:StartExecution"], [tagging_arn, retry_arn]),
                # Live prices for estimates; neither action has resource-level permissions.
                iam.statement(["ec2:DescribeSpotPriceHistory", "pricing:GetProducts"], ["*"]),
                iam.statement(
                    ["states:DescribeExecution", "states:StopExecution"],
                    [ctx.arn("states", f"execution:{n}:*") for n in (names.tagging, names.retry)],
                ),
                *buckets.read(only_artifacts=True),
                iam.statement(
                    ["s3:PutObject", "s3:DeleteObject"],
                    [pulumi.Output.concat(storage.bucket.arn, "/bots/*")],
                ),
                *custom_bots.statements(),
            ],
            environment={
                envnames.STATE_MACHINE_ARN: tagging_arn,
                envnames.RETRY_STATE_MACHINE_ARN: retry_arn,
                envnames.JOB_QUEUE_ARN: compute.queue.arn,
                envnames.DEFAULT_INFERENCE: settings.inference_default,
                envnames.CUSTOM_BOT_COMPUTE: custom_bots.setting(),
            },
            timeout_seconds=29,
        ),
        "init": FunctionSpec(
            statements=[es, *buckets.read(), *buckets.write()],
            environment={envnames.DEFAULT_INFERENCE: settings.inference_default},
        ),
        "scan": FunctionSpec(
            statements=[es, *buckets.read()], timeout_seconds=900, memory_mib=1024
        ),
        "endpoint": FunctionSpec(
            statements=[
                es,
                *buckets.read(only_artifacts=True),
                iam.statement(
                    [
                        "sagemaker:CreateModel",
                        "sagemaker:CreateEndpointConfig",
                        "sagemaker:CreateEndpoint",
                        "sagemaker:DescribeModel",
                        "sagemaker:DescribeEndpointConfig",
                        "sagemaker:DescribeEndpoint",
                        "sagemaker:AddTags",
                    ],
                    endpoint_arns.all,
                ),
                iam.statement(
                    ["iam:PassRole"],
                    [models.sagemaker_role.arn],
                    condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
            ],
            environment={
                envnames.SAGEMAKER_ROLE_ARN: models.sagemaker_role.arn,
                envnames.IMAGE_URIS: pulumi.Output.json_dumps(models.image_uris),
                envnames.ENDPOINT_INSTANCE_TYPE: settings.endpoint_instance_type,
            },
        ),
        "finalize": FunctionSpec(statements=[es, *buckets.read(), *buckets.write()]),
        "cleanup": FunctionSpec(
            statements=[
                es,
                *terminate,
                iam.statement(
                    [
                        "sagemaker:DeleteEndpoint",
                        "sagemaker:DeleteEndpointConfig",
                        "sagemaker:DeleteModel",
                        "sagemaker:DescribeEndpoint",
                    ],
                    endpoint_arns.all,
                ),
                iam.statement(["events:PutEvents"], [ctx.arn("events", "event-bus/default")]),
                # The idle-endpoint count; ListEndpoints has no resource-level permissions.
                iam.statement(["sagemaker:ListEndpoints"], ["*"]),
            ],
            environment={envnames.JOB_QUEUE_ARN: compute.queue.arn, envnames.EVENT_BUS: "default"},
        ),
        # Reads a custom bot's document for its job definition.
        "requeue": FunctionSpec(statements=[es, *buckets.read(only_artifacts=True)]),
    }
    functions = Functions(
        "functions",
        FunctionsArgs(
            ctx=ctx,
            specs=specs,
            environment={
                **environment,
                # The stack's price table: estimates, the workers' and the endpoint's spend.
                envnames.INSTANCE_PRICES: settings.instance_prices_env(),
                envnames.MAX_VCPUS: str(settings.max_vcpus),
                envnames.POWERTOOLS_SERVICE_NAME: METRICS_SERVICE,
                envnames.POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
                envnames.LOG_LEVEL: "INFO",
            },
            log_retention_days=settings.log_retention_days,
            name_prefix=names.base,
            powertools_layer_arn=settings.powertools_layer_arn,
            powertools_layer_version=settings.powertools_layer_version,
        ),
    )
    orchestration = Orchestration(
        "orchestration",
        OrchestrationArgs(
            ctx=ctx,
            function_arns={h: f.function.arn for h, f in functions.functions.items()},
            cleanup_function_name=functions.functions["cleanup"].function.name,
            job_queue_arn=compute.queue.arn,
            job_definition_arns={b: d.arn for b, d in compute.job_definitions.items()},
            tagging_name=names.tagging,
            retry_name=names.retry,
            endpoint_name_prefix=names.base,
            log_retention_days=settings.log_retention_days,
            endpoint_poll_seconds=settings.endpoint_poll_seconds,
            max_concurrent_arrays=settings.max_concurrent_arrays,
        ),
    )
    search.allow([*(r.arn for r in functions.roles), compute.job_role.arn])
    api_function = functions.functions["api"].function
    api = Api(
        "api",
        ApiArgs(
            ctx=ctx,
            function_name=api_function.name,
            function_invoke_arn=api_function.invoke_arn,
            log_retention_days=settings.log_retention_days,
            rate_limit=settings.api_rate_limit,
            burst_limit=settings.api_burst_limit,
            name_prefix=names.base,
        ),
    )
    notifications = Notifications(
        "notifications",
        NotificationsArgs(
            ctx=ctx,
            cleanup_function_name=functions.functions["cleanup"].function.name,
            cleanup_function_arn=functions.functions["cleanup"].function.arn,
            name_prefix=names.base,
            notify_email=settings.notify_email,
            metrics_namespace=METRICS_NAMESPACE,
            metrics_service=METRICS_SERVICE,
        ),
    )
    outputs = {
        "api_url": api.url,
        "job_events_topic_arn": notifications.topic.arn,
        "state_machine_arn": orchestration.tagging.arn,
        "retry_state_machine_arn": orchestration.retry.arn,
        "artifacts_bucket": storage.bucket.bucket,
        "opensearch_endpoint": search.endpoint,
        "ecr_repository_urls": {b: r.repository_url for b, r in models.repositories.items()},
        "custom_bot_repository_url": models.custom_repository.repository_url,
        "job_queue_arn": compute.queue.arn,
        "training_role_arn": training.role.arn,
        "training_starter_policy_arn": training.starter_policy.arn,
    }
    return Deployment(
        storage,
        network,
        search,
        models,
        compute,
        functions,
        orchestration,
        api,
        outputs,
        training,
        notifications,
    )


class _BucketAccess:
    """Statements over the artifacts bucket and the configured job buckets, and nothing else."""

    def __init__(self, ctx: AwsContext, artifacts_arn: pulumi.Output[str], names: tuple[str, ...]):
        self.artifacts = artifacts_arn
        self.others = [f"arn:{ctx.partition}:s3:::{n}" for n in names]

    def _buckets(self, only_artifacts: bool) -> list[Any]:
        return [self.artifacts] if only_artifacts else [self.artifacts, *self.others]

    def read(self, only_artifacts: bool = False) -> list[Statement]:
        buckets = self._buckets(only_artifacts)
        return [
            iam.statement(["s3:ListBucket", "s3:GetBucketLocation"], buckets),
            iam.statement(["s3:GetObject"], [pulumi.Output.concat(b, "/*") for b in buckets]),
        ]

    def write(self) -> list[Statement]:
        objects = [pulumi.Output.concat(b, "/*") for b in self._buckets(False)]
        return [iam.statement(["s3:PutObject", "s3:AbortMultipartUpload"], objects)]


class _CustomBots:
    """What the api function needs to register custom bots' Batch job definitions, and no more.

    It may register and deregister definitions named ``<base>-custom-*`` only, only for images
    (by digest) from the stack's repositories or ``customBotRepositories``, never privileged,
    and it may pass only the workers' job role (spotbot/aws/job_definitions.py).
    """

    def __init__(
        self, ctx: AwsContext, compute: Compute, models: Models, settings: SpotbotSettings
    ):
        self.compute = compute
        self.definitions = ctx.arn("batch", f"job-definition/{compute.custom_definition_prefix}*")
        self.repositories: list[pulumi.Input[str]] = [
            models.custom_repository.repository_url,
            *(r.repository_url for r in models.repositories.values()),
            *settings.custom_bot_repositories,
        ]
        self.attempts = settings.job_attempts
        self.timeout_seconds = settings.job_timeout_hours * 3600

    def statements(self) -> list[Statement]:
        images = [pulumi.Output.concat(r, "@sha256:*") for r in self.repositories]
        return [
            iam.statement(
                ["batch:RegisterJobDefinition"],
                [self.definitions],
                condition={
                    "StringLike": {"batch:Image": images},
                    "Bool": {"batch:Privileged": "false"},
                },
            ),
            iam.statement(["batch:DeregisterJobDefinition"], [self.definitions]),
            iam.statement(["iam:PassRole"], [self.compute.job_role.arn]),
        ]

    def setting(self) -> pulumi.Output[str]:
        """The api function's ``SPOTBOT_CUSTOM_BOT_COMPUTE``."""
        return pulumi.Output.json_dumps(
            {
                "name_prefix": self.compute.custom_definition_prefix,
                "job_role_arn": self.compute.job_role.arn,
                "log_group": self.compute.log_group.name,
                "image_repositories": self.repositories,
                "attempts": self.attempts,
                "timeout_seconds": self.timeout_seconds,
            }
        )


class _EndpointArns:
    """SageMaker resources this stack names ``<base>-...``."""

    def __init__(self, ctx: AwsContext, base: str):
        self.endpoints = ctx.arn("sagemaker", f"endpoint/{base}-*")
        self.all = [
            self.endpoints,
            ctx.arn("sagemaker", f"endpoint-config/{base}-*"),
            ctx.arn("sagemaker", f"model/{base}-*"),
        ]


def export(outputs: dict[str, Any]) -> None:
    for key, value in outputs.items():
        pulumi.export(key, value)
