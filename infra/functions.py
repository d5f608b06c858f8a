"""Functions: one Lambda per handler, each with its own least-privilege role and log group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra import iam, lambda_package
from infra.iam import AwsContext, Statement

HANDLERS = ("api", "init", "scan", "endpoint", "finalize", "cleanup", "requeue")
RUNTIME = "python3.11"
ARCHITECTURE = "x86_64"
#: Powertools' public layer account per partition.
POWERTOOLS_ACCOUNTS = {"aws": "017000801446", "aws-cn": "498634801083"}


@dataclass(frozen=True)
class FunctionSpec:
    """One handler: ``functions/<name>.py`` with ``lambda_handler``, and what it may do."""

    statements: Sequence[Statement]
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    timeout_seconds: int = 300
    memory_mib: int = 512

    def __post_init__(self) -> None:
        if not 1 <= self.timeout_seconds <= 900:
            raise ValueError("a Lambda timeout is 1..900 seconds")


@dataclass(frozen=True)
class FunctionsArgs:
    ctx: AwsContext
    specs: Mapping[str, FunctionSpec]
    environment: Mapping[str, pulumi.Input[str]]
    log_retention_days: int
    name_prefix: str
    powertools_layer_arn: str | None = None
    powertools_layer_version: int = 27


def powertools_layer(ctx: AwsContext, version: int) -> str:
    account = POWERTOOLS_ACCOUNTS.get(ctx.partition, POWERTOOLS_ACCOUNTS["aws"])
    layer = f"AWSLambdaPowertoolsPythonV3-{RUNTIME.replace('.', '')}-x86_64:{version}"
    return f"arn:{ctx.partition}:lambda:{ctx.region}:{account}:layer:{layer}"


def code_archive() -> pulumi.FileArchive:
    """The function package (infra/lambda_package.py), built now or reused from build/.

    Built while the program runs, so `pulumi preview` already fails on a package that would
    not build or would not fit Lambda's limit, with the reason.
    """
    return pulumi.FileArchive(str(lambda_package.build(architecture=ARCHITECTURE).zip_path))


class LambdaFunction(pulumi.ComponentResource):
    """A function, its role (only its own statements) and its log group (with retention)."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup

    def __init__(
        self,
        name: str,
        *,
        handler: str,
        function_name: str,
        spec: FunctionSpec,
        args: FunctionsArgs,
        code: pulumi.Archive,
        layers: Sequence[pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("spotbot:infra:LambdaFunction", name, None, opts)
        ctx = args.ctx
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.role = iam.role(
            f"{name}-role",
            ctx,
            services=["lambda"],
            statements=[
                iam.log_statement(self.log_group.arn),
                iam.xray_statement(),
                *spec.statements,
            ],
            parent=self,
            description=f"spotbot {handler} function",
        )
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            runtime=RUNTIME,
            architectures=[ARCHITECTURE],
            handler=f"functions.{handler}.lambda_handler",
            role=self.role.arn,
            code=code,
            layers=list(layers),
            timeout=spec.timeout_seconds,
            memory_size=spec.memory_mib,
            tracing_config={"mode": "Active"},
            logging_config={"log_format": "JSON", "log_group": self.log_group.name},
            environment={"variables": {**args.environment, **spec.environment}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_group]),
        )
        self.register_outputs({"arn": self.function.arn})


class Functions(pulumi.ComponentResource):
    """Every handler of ``functions/`` as a :class:`LambdaFunction`."""

    functions: dict[str, LambdaFunction]

    def __init__(self, name: str, args: FunctionsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Functions", name, None, opts)
        missing = set(HANDLERS) - set(args.specs)
        if missing:
            raise ValueError(f"no spec for handlers {sorted(missing)}")
        layers: list[pulumi.Input[str]] = [
            args.powertools_layer_arn or powertools_layer(args.ctx, args.powertools_layer_version)
        ]
        code = code_archive()
        self.functions = {
            handler: LambdaFunction(
                f"{name}-{handler}",
                handler=handler,
                function_name=function_name(args.name_prefix, handler),
                spec=args.specs[handler],
                args=args,
                code=code,
                layers=layers,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for handler in HANDLERS
        }
        self.register_outputs({h: f.function.arn for h, f in self.functions.items()})

    def arn(self, handler: str) -> pulumi.Output[str]:
        return self.functions[handler].function.arn

    @property
    def roles(self) -> list[aws.iam.Role]:
        return [f.role for f in self.functions.values()]


def function_name(prefix: str, handler: str) -> str:
    return f"{prefix}-{handler}"
