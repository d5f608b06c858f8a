"""Api: the REST API (API Gateway) in front of the api function - IAM auth on every method."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import AwsContext

#: (path, methods, required query strings) of DESIGN.md's cloud interface.
ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/jobs", ("GET", "POST")),
    ("/jobs/{id}", ("GET", "DELETE")),
    ("/jobs/{id}/retry", ("POST",)),
    ("/bots", ("GET",)),
    ("/bots/{name}", ("GET", "PUT", "DELETE")),
    ("/bots/{name}/models", ("GET",)),
    ("/search", ("GET",)),
)
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "user": "$context.identity.userArn",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationError": "$context.integrationErrorMessage",
}


@dataclass(frozen=True)
class ApiArgs:
    ctx: AwsContext
    function_name: pulumi.Input[str]
    function_invoke_arn: pulumi.Input[str]
    log_retention_days: int
    rate_limit: float
    burst_limit: int
    name_prefix: str = "spotbot"
    stage_name: str = "v1"


class Api(pulumi.ComponentResource):
    """REST API, AWS_IAM on every method, request validation, access logs, stage throttling."""

    rest_api: aws.apigateway.RestApi
    stage: aws.apigateway.Stage
    methods: list[aws.apigateway.Method]

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("spotbot:infra:Api", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.rest_api = aws.apigateway.RestApi(
            f"{name}-rest",
            name=f"{args.name_prefix}-api",
            description="spotbot jobs, bots and search (IAM-signed requests)",
            endpoint_configuration={"types": "REGIONAL"},
            opts=child,
        )
        self.validator = aws.apigateway.RequestValidator(
            f"{name}-validator",
            rest_api=self.rest_api.id,
            name="params-and-body",
            validate_request_parameters=True,
            validate_request_body=True,
            opts=child,
        )
        resources = self._resources(name)
        self.methods, integrations = [], []
        for path, verbs in ROUTES:
            for verb in verbs:
                slug = f"{verb.lower()}{path.replace('/', '-').replace('{', '').replace('}', '')}"
                params = {f"method.request.path.{p}": True for p in _path_params(path)}
                if path == "/search":
                    params["method.request.querystring.q"] = True
                method = aws.apigateway.Method(
                    f"{name}-{slug}",
                    rest_api=self.rest_api.id,
                    resource_id=resources[path].id,
                    http_method=verb,
                    authorization="AWS_IAM",
                    request_validator_id=self.validator.id,
                    request_parameters=params or None,
                    opts=child,
                )
                integrations.append(
                    aws.apigateway.Integration(
                        f"{name}-{slug}-integration",
                        rest_api=self.rest_api.id,
                        resource_id=resources[path].id,
                        http_method=method.http_method,
                        type="AWS_PROXY",
                        integration_http_method="POST",
                        uri=args.function_invoke_arn,
                        opts=child,
                    )
                )
                self.methods.append(method)
        routes_hash = hashlib.sha256(json.dumps(ROUTES).encode()).hexdigest()
        deployment = aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=self.rest_api.id,
            triggers={"routes": routes_hash},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.methods, *integrations]),
        )
        self.access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=f"/aws/apigateway/{args.name_prefix}-api",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        self.stage = aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=self.rest_api.id,
            deployment=deployment.id,
            stage_name=args.stage_name,
            xray_tracing_enabled=True,
            access_log_settings={
                "destination_arn": self.access_logs.arn,
                "format": json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
            },
            opts=child,
        )
        self.settings = aws.apigateway.MethodSettings(
            f"{name}-throttling",
            rest_api=self.rest_api.id,
            stage_name=self.stage.stage_name,
            method_path="*/*",
            settings={
                "metrics_enabled": True,
                "throttling_rate_limit": args.rate_limit,
                "throttling_burst_limit": args.burst_limit,
            },
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=args.function_name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(self.rest_api.execution_arn, "/*/*"),
            opts=child,
        )
        self.url = self.stage.invoke_url
        self.register_outputs({"url": self.url})

    def _resources(self, name: str) -> dict[str, aws.apigateway.Resource]:
        made: dict[str, aws.apigateway.Resource] = {}
        for path, _ in ROUTES:
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                sub = "/" + "/".join(parts[:depth])
                if sub in made:
                    continue
                parent_id = (
                    self.rest_api.root_resource_id
                    if depth == 1
                    else made["/" + "/".join(parts[: depth - 1])].id
                )
                slug = sub.strip("/").replace("/", "-").replace("{", "").replace("}", "")
                made[sub] = aws.apigateway.Resource(
                    f"{name}-res-{slug}",
                    rest_api=self.rest_api.id,
                    parent_id=parent_id,
                    path_part=parts[depth - 1],
                    opts=pulumi.ResourceOptions(parent=self),
                )
        return made


def _path_params(path: str) -> list[str]:
    return [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
