"""Tests of the Pulumi program under mocks: resource groups, policy checks, config, the definition."""

from __future__ import annotations

import hashlib
import json
import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pulumi = pytest.importorskip("pulumi")
pytest.importorskip("pulumi_aws")

from infra import config, images, policies, stack  # noqa: E402
from infra.policies import DeclaredResource  # noqa: E402
from workflows.tagging import TaggingRefs, build_definition, build_retry_definition  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ACCOUNT, REGION = "123456789012", "us-east-1"


def _arn(service: str, resource: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


# Outputs the provider would compute, per type token; the mock adds them to the inputs.
DEFAULTS: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "aws:s3/bucket:Bucket": lambda n, i: {"bucket": n, "arn": f"arn:aws:s3:::{n}"},
    "aws:opensearch/domain:Domain": lambda n, i: {
        "arn": _arn("es", f"domain/{i['domainName']}"),
        "endpoint": f"search-{i['domainName']}-abc.{REGION}.es.amazonaws.com",
    },
    "aws:ecr/repository:Repository": lambda n, i: {
        "arn": _arn("ecr", f"repository/{n}"),
        "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{n}",
        "registryId": ACCOUNT,
    },
    "docker-build:index:Image": lambda n, i: {
        "digest": "sha256:" + hashlib.sha256(n.encode()).hexdigest(),
        "ref": f"{i['tags'][0]}@sha256:" + hashlib.sha256(n.encode()).hexdigest(),
    },
    "aws:lambda/function:Function": lambda n, i: {
        "arn": _arn("lambda", f"function:{n}"),
        "invokeArn": f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
        f"{_arn('lambda', f'function:{n}')}/invocations",
    },
    "aws:iam/role:Role": lambda n, i: {"arn": f"arn:aws:iam::{ACCOUNT}:role/{n}"},
    "aws:iam/instanceProfile:InstanceProfile": lambda n, i: {
        "arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{n}"
    },
    "aws:cloudwatch/logGroup:LogGroup": lambda n, i: {"arn": _arn("logs", f"log-group:{n}")},
    "aws:batch/jobQueue:JobQueue": lambda n, i: {"arn": _arn("batch", f"job-queue/{n}")},
    "aws:batch/jobDefinition:JobDefinition": lambda n, i: {
        "arn": _arn("batch", f"job-definition/{n}:1")
    },
    "aws:batch/computeEnvironment:ComputeEnvironment": lambda n, i: {
        "arn": _arn("batch", f"compute-environment/{n}")
    },
    "aws:sfn/stateMachine:StateMachine": lambda n, i: {"arn": _arn("states", f"stateMachine:{n}")},
    "aws:apigateway/restApi:RestApi": lambda n, i: {
        "rootResourceId": "root0",
        "executionArn": _arn("execute-api", "api0"),
    },
    "aws:apigateway/stage:Stage": lambda n, i: {
        "invokeUrl": f"https://api0.execute-api.{REGION}.amazonaws.com/{i['stageName']}"
    },
    "aws:cloudwatch/eventRule:EventRule": lambda n, i: {"arn": _arn("events", f"rule/{n}")},
}
CALLS: dict[str, dict[str, Any]] = {
    "aws:index/getPartition:getPartition": {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "id": "aws",
        "reverseDnsPrefix": "com.amazonaws",
    },
    "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION, "id": REGION},
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "accountId": ACCOUNT,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
        "userId": "AIDA",
        "id": ACCOUNT,
    },
    "aws:ec2/getVpc:getVpc": {"id": "vpc-0default", "default": True},
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
        "id": ACCOUNT,
        "userName": "AWS",
        "password": "token",
        "authorizationToken": "QVdTOnRva2Vu",
        "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
        "expiresAt": "2030-01-01T00:00:00Z",
    },
    "aws:ec2/getSubnets:getSubnets": {"id": REGION, "ids": ["subnet-0a", "subnet-0b"]},
}


class SpotbotMocks(pulumi.runtime.Mocks):
    """One mocks class for every test, keyed on type tokens; records every custom resource."""

    def __init__(self) -> None:
        self.resources: list[DeclaredResource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.custom:
            return "", {}
        name = args.inputs.get("name") or args.name
        props = {"name": name, **args.inputs}
        props.update(DEFAULTS.get(args.typ, lambda n, i: {})(name, args.inputs))
        props.setdefault("arn", _arn("mock", f"{args.typ.rsplit(':', 1)[-1].lower()}/{name}"))
        resource_id = props.get("bucket", name) if args.typ == policies.BUCKET else f"{name}-id"
        self.resources.append(DeclaredResource(args.typ, args.name, props, resource_id))
        return resource_id, props

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return CALLS[args.token]


@pytest.fixture
def mocks() -> Iterator[SpotbotMocks]:
    instance = SpotbotMocks()
    pulumi.runtime.set_mocks(instance, project="spotbot", stack="test", preview=False)
    pulumi.runtime.set_all_config({})
    yield instance
    pulumi.runtime.set_all_config({})


def _example_config() -> dict[str, str]:
    import yaml

    values = yaml.safe_load((ROOT / "Pulumi.example.yaml").read_text())["config"]
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _deploy(mocks: SpotbotMocks, check: Callable[[stack.Deployment], Any]) -> None:
    """Build the stack inside the Pulumi runtime and wait for ``check``'s Output."""

    @pulumi.runtime.test
    def run() -> Any:
        return check(stack.build(config.from_pulumi()))

    run()


def _of(mocks: SpotbotMocks, typ: str) -> list[DeclaredResource]:
    return [r for r in mocks.resources if r.typ == typ]


# --- the program --------------------------------------------------------------------------------
@pytest.mark.parametrize("stack_file", [None, "Pulumi.example.yaml"])
def test_program_runs_and_passes_every_policy(mocks: SpotbotMocks, stack_file: str | None) -> None:
    # GIVEN no config at all, or the example stack file
    if stack_file:
        pulumi.runtime.set_all_config(_example_config())

    @pulumi.runtime.test
    def run() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    # WHEN the program runs THEN it declares every group and no check finds a violation
    run()
    types = {r.typ for r in mocks.resources}
    for token in (
        "aws:s3/bucket:Bucket",
        "aws:opensearch/domain:Domain",
        "aws:batch/computeEnvironment:ComputeEnvironment",
        "aws:sfn/stateMachine:StateMachine",
        "aws:apigateway/restApi:RestApi",
        "aws:ecr/repository:Repository",
    ):
        assert token in types
    assert [str(v) for v in policies.check_all(mocks.resources)] == []
    assert len(_of(mocks, "aws:lambda/function:Function")) == 7


def test_outputs_name_what_a_user_needs(mocks: SpotbotMocks) -> None:
    def check(d: stack.Deployment) -> Any:
        outputs = d.outputs
        return pulumi.Output.all(
            outputs["api_url"],
            outputs["state_machine_arn"],
            outputs["artifacts_bucket"],
            outputs["opensearch_endpoint"],
            outputs["ecr_repository_urls"],
        ).apply(_assert_outputs)

    _deploy(mocks, check)


def _assert_outputs(values: list[Any]) -> None:
    url, machine, bucket, search, repos = values
    assert url.startswith("https://") and url.endswith("/v1"), url
    assert machine.endswith(":stateMachine:spotbot-test-tagging"), machine
    assert bucket and search.startswith("https://"), (bucket, search)
    assert set(repos) == set(config.BUILTIN_BOTS)


# --- resource groups ----------------------------------------------------------------------------
def test_every_jobs_end_reaches_the_topic_and_a_failed_cleanup_raises_an_alarm(
    mocks: SpotbotMocks,
) -> None:
    # GIVEN a stack with an address to tell
    pulumi.runtime.set_all_config({"spotbot:notifyEmail": "ops@example.com"})
    _deploy(mocks, lambda d: d.outputs["job_events_topic_arn"])
    by_type: dict[str, list[DeclaredResource]] = {}
    for resource in mocks.resources:
        by_type.setdefault(resource.typ, []).append(resource)
    # THEN the job-ended rule sends spotbot's events to an encrypted topic the address is on
    (topic,) = by_type["aws:sns/topic:Topic"]
    assert topic.props["kmsMasterKeyId"] == "alias/aws/sns"
    (rule,) = [
        r for r in by_type["aws:cloudwatch/eventRule:EventRule"] if "job-ended" in r.props["name"]
    ]
    assert json.loads(rule.props["eventPattern"]) == {
        "source": ["spotbot"],
        "detail-type": ["Spotbot Job Ended"],
    }
    (subscription,) = by_type["aws:sns/topicSubscription:TopicSubscription"]
    assert (subscription.props["protocol"], subscription.props["endpoint"]) == (
        "email",
        "ops@example.com",
    )
    # AND a failing cleanup function raises an alarm on that topic
    alarms = {a.props["name"]: a for a in by_type["aws:cloudwatch/metricAlarm:MetricAlarm"]}
    assert set(alarms) == {"spotbot-test-cleanup-failed", "spotbot-test-idle-endpoint"}
    alarm = alarms["spotbot-test-cleanup-failed"]
    assert (alarm.props["namespace"], alarm.props["metricName"]) == ("AWS/Lambda", "Errors")
    assert alarm.props["dimensions"]["FunctionName"].endswith("cleanup")
    assert alarm.props["alarmActions"] == [topic.props["arn"]]
    # AND an endpoint in service with no running job raises one too: the cleanup function
    # counts such endpoints on a schedule, as the metric the functions emit (Powertools: the
    # functions' namespace, dimension "service"), and two counts above 0 in a row alarm
    idle = alarms["spotbot-test-idle-endpoint"]
    (cleanup,) = [
        f
        for f in by_type["aws:lambda/function:Function"]
        if f.props["handler"] == "functions.cleanup.lambda_handler"
    ]
    variables = cleanup.props["environment"]["variables"]
    assert (idle.props["namespace"], idle.props["metricName"]) == (
        variables["POWERTOOLS_METRICS_NAMESPACE"],
        "IdleEndpoints",
    )
    assert idle.props["dimensions"] == {"service": variables["POWERTOOLS_SERVICE_NAME"]}
    assert (idle.props["statistic"], idle.props["threshold"]) == ("Maximum", 0)
    assert idle.props["comparisonOperator"] == "GreaterThanThreshold"
    assert idle.props["evaluationPeriods"] == idle.props["datapointsToAlarm"] == 2
    assert idle.props["alarmActions"] == [topic.props["arn"]]
    (schedule,) = [
        r for r in by_type["aws:cloudwatch/eventRule:EventRule"] if "idle" in r.props["name"]
    ]
    assert (
        schedule.props["scheduleExpression"] == f"rate({int(idle.props['period']) // 60} minutes)"
    )
    targets = [
        t
        for t in by_type["aws:cloudwatch/eventTarget:EventTarget"]
        if t.props["rule"] == schedule.props["name"]
    ]
    assert [t.props["arn"] for t in targets] == [cleanup.props["arn"]]
    (permission,) = [
        p
        for p in by_type["aws:lambda/permission:Permission"]
        if p.props.get("sourceArn") == schedule.props["arn"]
    ]
    assert permission.props["principal"] == "events.amazonaws.com"
    assert permission.props["function"] == cleanup.props["name"]
    # AND the cleanup function may put events on the default bus, and only there
    cleanup_policies = [
        json.loads(r.props["policy"])
        for r in by_type["aws:iam/rolePolicy:RolePolicy"]
        if "cleanup" in r.label
    ]
    puts = [
        s for doc in cleanup_policies for s in doc["Statement"] if "events:PutEvents" in s["Action"]
    ]
    assert puts and all(
        s["Resource"]
        in (_arn("events", "event-bus/default"), [_arn("events", "event-bus/default")])
        for s in puts
    ), puts
    # AND it may list endpoints (to count idle ones) but delete only the stack's
    lists = [
        s
        for doc in cleanup_policies
        for s in doc["Statement"]
        if "sagemaker:ListEndpoints" in s["Action"]
    ]
    assert [s["Action"] for s in lists] == [["sagemaker:ListEndpoints"]]


def test_compute_is_spot_with_host_loss_retry(mocks: SpotbotMocks) -> None:
    def check(d: stack.Deployment) -> Any:
        env = d.compute.compute_environments[0]
        jobdef = d.compute.job_definitions["ocr-zh"]
        return pulumi.Output.all(
            env.urn,
            env.compute_resources,
            jobdef.urn,
            jobdef.retry_strategy,
            jobdef.container_properties,
            jobdef.timeout,
            d.compute.log_group.retention_in_days,
        ).apply(_assert_compute)

    _deploy(mocks, check)


def _assert_compute(values: list[Any]) -> None:
    env_urn, res, jd_urn, retry, container, timeout, retention = values
    assert res["type"] == "SPOT", env_urn
    assert res["allocation_strategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED", env_urn
    assert res["min_vcpus"] == 0 and res["max_vcpus"] == 256, env_urn
    assert len(res["instance_types"]) >= 3, env_urn
    assert retry["evaluate_on_exits"][0] == {"on_status_reason": "Host EC2*", "action": "RETRY"}, (
        jd_urn
    )
    assert {"on_exit_code": "75", "action": "RETRY"} in retry["evaluate_on_exits"], jd_urn
    assert retry["evaluate_on_exits"][-1]["action"] == "EXIT", jd_urn
    props = json.loads(container)
    assert props["logConfiguration"]["logDriver"] == "awslogs", jd_urn
    assert {r["type"] for r in props["resourceRequirements"]} >= {"VCPU", "MEMORY"}, jd_urn
    assert timeout["attempt_duration_seconds"] > 0 and retention == 30, jd_urn


def test_example_stack_adds_on_demand_fallback_behind_spot(mocks: SpotbotMocks) -> None:
    pulumi.runtime.set_all_config(_example_config())

    def check(d: stack.Deployment) -> Any:
        spot, ondemand = d.compute.compute_environments
        return pulumi.Output.all(
            d.compute.queue.urn,
            d.compute.queue.compute_environment_orders,
            spot.arn,
            ondemand.compute_resources,
        ).apply(_assert_fallback)

    _deploy(mocks, check)


def _assert_fallback(values: list[Any]) -> None:
    urn, orders, spot_arn, ondemand = values
    assert orders[0] == {"order": 0, "compute_environment": spot_arn}, urn
    assert ondemand["type"] == "EC2" and ondemand["max_vcpus"] == 64, urn


def test_search_is_encrypted_https_and_stack_only(mocks: SpotbotMocks) -> None:
    _deploy(mocks, lambda d: d.outputs["opensearch_endpoint"])
    (domain,) = _of(mocks, "aws:opensearch/domain:Domain")
    p = domain.props
    assert p["encryptAtRest"]["enabled"] and p["nodeToNodeEncryption"]["enabled"], domain.label
    assert p["domainEndpointOptions"] == {
        "enforceHttps": True,
        "tlsSecurityPolicy": "Policy-Min-TLS-1-2-PFS-2023-10",
    }, domain.label
    (access,) = _of(mocks, "aws:opensearch/domainPolicy:DomainPolicy")
    principals = json.loads(access.props["accessPolicies"])["Statement"][0]["Principal"]["AWS"]
    roles = {r.props["arn"] for r in _of(mocks, "aws:iam/role:Role")}
    assert principals and set(principals) <= roles, access.label


def test_storage_bucket_guard_rails(mocks: SpotbotMocks) -> None:
    _deploy(mocks, lambda d: d.outputs["artifacts_bucket"])
    (tls,) = _of(mocks, "aws:s3/bucketPolicy:BucketPolicy")
    deny = json.loads(tls.props["policy"])["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    (versioning,) = _of(mocks, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.props["versioningConfiguration"]["status"] == "Enabled"
    (lifecycle,) = _of(mocks, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert lifecycle.props["rules"][0]["filter"]["prefix"] == "tmp/"


def test_images_are_built_from_the_one_definition_and_referenced_by_digest(
    mocks: SpotbotMocks,
) -> None:
    # GIVEN a stack that names a prebuilt image for car-model only
    prebuilt = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mine@sha256:" + "c" * 64
    pulumi.runtime.set_all_config({"spotbot:images": json.dumps({"car-model": prebuilt})})

    def check(d: stack.Deployment) -> Any:
        jobdefs = d.compute.job_definitions
        return pulumi.Output.all(
            *(jobdefs[bot].container_properties for bot in config.BUILTIN_BOTS)
        ).apply(lambda props: dict(zip(config.BUILTIN_BOTS, props, strict=True)))

    seen: dict[str, str] = {}
    _deploy(mocks, lambda d: check(d).apply(seen.update))
    built = {
        r.props["buildArgs"]["BOT"]: r.props
        for r in mocks.resources
        if r.typ == "docker-build:index:Image"
    }
    # THEN the other bots' images are built from images/Dockerfile with their build arguments,
    # pushed to their own repository under a content tag
    assert sorted(built) == ["ocr-zh", "sentiment-zh"]
    for bot in ("ocr-zh", "sentiment-zh"):
        props = built[bot]
        assert props["dockerfile"]["location"].endswith("images/Dockerfile")
        assert props["buildArgs"] == {"BOT": bot, **images.buildable_bots()[bot]}
        assert props["push"] is True and props["platforms"] == ["linux/amd64"]
        (tag,) = props["tags"]
        assert tag.endswith(f"/spotbot-test/{bot}:0.1.0-{images.context_digest(bot)}"), tag
        # AND the Batch job definition runs that image by its pushed digest
        image = json.loads(seen[bot])["image"]
        assert image.split("@")[0] == tag.split(":0.1.0")[0] and "@sha256:" in image, image
    assert json.loads(seen["car-model"])["image"] == prebuilt


def test_models_repositories_are_scanned_and_immutable(mocks: SpotbotMocks) -> None:
    _deploy(mocks, lambda d: d.outputs["ecr_repository_urls"])
    repos = _of(mocks, "aws:ecr/repository:Repository")
    assert sorted(r.props["name"] for r in repos) == [
        "spotbot-test/car-model",
        "spotbot-test/custom-bots",  # for images of bots registered through the API
        "spotbot-test/ocr-zh",
        "spotbot-test/sentiment-zh",
    ]
    for repo in repos:
        assert repo.props["imageTagMutability"] == "IMMUTABLE", repo.label
        assert repo.props["imageScanningConfiguration"] == {"scanOnPush": True}, repo.label


def _role_statements(mocks: SpotbotMocks, function: str) -> list[dict[str, Any]]:
    return [
        stmt
        for r in _of(mocks, "aws:iam/rolePolicy:RolePolicy")
        if r.name.startswith(f"functions-{function}-")
        for stmt in json.loads(r.props["policy"])["Statement"]
    ]


def test_the_api_may_register_custom_bots_job_definitions_and_nothing_more(
    mocks: SpotbotMocks,
) -> None:
    from spotbot.aws.job_definitions import CustomBotCompute

    # GIVEN a stack that also allows a CI registry's repository for custom bots
    ci = "registry.example.com:5000/team/bots"
    pulumi.runtime.set_all_config({"spotbot:customBotRepositories": json.dumps([ci])})
    _deploy(mocks, lambda d: d.outputs["custom_bot_repository_url"])
    # THEN the api function registers and deregisters job definitions under its prefix only
    prefix = _arn("batch", "job-definition/spotbot-test-custom-*")
    batch = {
        a: s for s in _role_statements(mocks, "api") for a in s["Action"] if a.startswith("batch:")
    }
    assert {a: s["Resource"] for a, s in batch.items() if "JobDefinition" in a} == {
        "batch:RegisterJobDefinition": [prefix],
        "batch:DeregisterJobDefinition": [prefix],
    }
    # and only for unprivileged containers of images by digest from the allowed repositories
    repo_url = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/spotbot-test/"
    condition = batch["batch:RegisterJobDefinition"]["Condition"]
    assert sorted(condition["StringLike"]["batch:Image"]) == sorted(
        [f"{repo_url}{b}@sha256:*" for b in (*config.BUILTIN_BOTS, "custom-bots")]
        + [f"{ci}@sha256:*"]
    )
    assert condition["Bool"] == {"batch:Privileged": "false"}
    # and it may pass the workers' job role, and no other role
    (job_role,) = [r for r in _of(mocks, "aws:iam/role:Role") if r.name == "compute-job"]
    passes = [s for s in _role_statements(mocks, "api") if "iam:PassRole" in s["Action"]]
    assert [s["Resource"] for s in passes] == [[job_role.props["arn"]]]
    # and no other function may touch job definitions or pass the job role
    for function in ("init", "scan", "endpoint", "finalize", "cleanup", "requeue"):
        actions = {a for s in _role_statements(mocks, function) for a in s["Action"]}
        assert not {"batch:RegisterJobDefinition", "batch:DeregisterJobDefinition"} & actions
    # AND its setting names the same prefix, role, log group and repositories
    (api,) = [
        f
        for f in _of(mocks, "aws:lambda/function:Function")
        if f.props["handler"] == "functions.api.lambda_handler"
    ]
    compute = CustomBotCompute.from_json(
        api.props["environment"]["variables"]["SPOTBOT_CUSTOM_BOT_COMPUTE"]
    )
    assert _arn("batch", f"job-definition/{compute.definition_name('x')}").startswith(
        prefix.rstrip("*")
    )
    assert compute.job_role_arn == job_role.props["arn"]
    assert compute.log_group == "/aws/batch/spotbot-test-workers"
    assert compute.allows_image(f"{ci}@sha256:" + "0" * 64)
    assert compute.allows_image(f"{repo_url}custom-bots@sha256:" + "0" * 64)
    assert not compute.allows_image("docker.io/library/python@sha256:" + "0" * 64)
    assert (compute.attempts, compute.timeout_seconds) == (3, 24 * 3600)
    # AND SageMaker may pull the custom bots' images, for their jobs in endpoint mode
    pulls = [
        s
        for r in _of(mocks, "aws:iam/rolePolicy:RolePolicy")
        if r.name.startswith("models-sagemaker")
        for s in json.loads(r.props["policy"])["Statement"]
        if "ecr:BatchGetImage" in s["Action"]
    ]
    assert [s["Resource"] for s in pulls] == [
        [_arn("ecr", f"repository/spotbot-test/{b}") for b in (*config.BUILTIN_BOTS, "custom-bots")]
    ]


def test_only_the_api_reads_live_prices_with_named_actions_on_star(mocks: SpotbotMocks) -> None:
    # GIVEN the default stack
    _deploy(mocks, lambda d: d.outputs["api_url"])
    # THEN the api function (it prices dry runs) may read Spot and on-demand prices: the two
    # actions by name on "*" (they have no resource-level permissions), never a wildcard action
    pricing = {"ec2:DescribeSpotPriceHistory", "pricing:GetProducts"}
    (stmt,) = [s for s in _role_statements(mocks, "api") if pricing & set(s["Action"])]
    assert sorted(stmt["Action"]) == sorted(pricing) and stmt["Resource"] == ["*"]
    assert stmt["Effect"] == "Allow" and "Condition" not in stmt
    # and no other function may
    for function in ("init", "scan", "endpoint", "finalize", "cleanup", "requeue"):
        actions = {a for s in _role_statements(mocks, function) for a in s["Action"]}
        assert not pricing & actions, function


def test_the_stack_price_table_reaches_every_function(mocks: SpotbotMocks) -> None:
    from spotbot.cloud.estimate import endpoint_hour_usd, spot_vcpu_hour_usd, stack_prices
    from spotbot.core.cost import default_prices

    # GIVEN the example stack file, whose spotbot:instancePrices has EC2 and SageMaker types
    pulumi.runtime.set_all_config(_example_config())
    _deploy(mocks, lambda d: d.outputs["api_url"])
    functions = _of(mocks, "aws:lambda/function:Function")
    assert len(functions) == 7
    # THEN every function's environment carries the table, as JSON, and the deployment's vCPUs
    tables = {f.props["environment"]["variables"]["SPOTBOT_INSTANCE_PRICES"] for f in functions}
    assert len(tables) == 1
    (table,) = tables
    assert json.loads(table) == {
        "c6i.xlarge": {"spot": 0.0712, "on_demand": 0.19},
        "c7i.xlarge": {"spot": 0.0745, "on_demand": 0.1995},
        "m6i.xlarge": {"spot": 0.0801, "on_demand": 0.214},
        "ml.g5.xlarge": {"on_demand": 1.57},
    }
    assert {f.props["environment"]["variables"]["SPOTBOT_MAX_VCPUS"] for f in functions} == {"1024"}
    # and the functions' code reads it as the stack's prices: workers' Spot vCPU-hours,
    # estimates, and the endpoint's hours
    env = {"SPOTBOT_INSTANCE_PRICES": table}
    book = stack_prices(default_prices(), env)
    assert book.instance("c6i.xlarge").spot_hourly == 0.0712
    assert book.instance("c6i.xlarge").vcpus == 4 and book.source == "stack config"
    assert "ml.g5.xlarge" not in book.instances
    assert endpoint_hour_usd("ml.g5.xlarge", env) == 1.57
    assert endpoint_hour_usd("ml.m5.large", env) == 0.115  # not in the stack: shipped table
    # and the default stack carries an empty table (the shipped one applies)
    assert json.loads(config.SpotbotSettings().instance_prices_env()) == {}
    assert spot_vcpu_hour_usd() == round(0.068 / 4, 6)


def test_api_uses_iam_auth_validation_logs_and_throttling(mocks: SpotbotMocks) -> None:
    _deploy(mocks, lambda d: d.api.url)
    methods = _of(mocks, "aws:apigateway/method:Method")
    assert len(methods) == 11  # DELETE /bots/{name} among them
    for method in methods:
        assert method.props["authorization"] == "AWS_IAM", method.label
        assert method.props["requestValidatorId"], method.label
    integrations = _of(mocks, "aws:apigateway/integration:Integration")
    assert {i.props["type"] for i in integrations} == {"AWS_PROXY"}
    (stage,) = _of(mocks, "aws:apigateway/stage:Stage")
    assert stage.props["accessLogSettings"]["destinationArn"] and stage.props["xrayTracingEnabled"]
    (settings,) = _of(mocks, "aws:apigateway/methodSettings:MethodSettings")
    assert settings.props["settings"]["throttlingRateLimit"] == 20.0


def test_functions_have_own_roles_log_groups_and_handlers(mocks: SpotbotMocks) -> None:
    _deploy(mocks, lambda d: d.outputs["api_url"])
    functions = _of(mocks, "aws:lambda/function:Function")
    assert {f.props["handler"] for f in functions} == {
        f"functions.{h}.lambda_handler"
        for h in ("api", "init", "scan", "endpoint", "finalize", "cleanup", "requeue")
    }
    assert len({f.props["role"] for f in functions}) == len(functions)
    for f in functions:
        assert f.props["tracingConfig"] == {"mode": "Active"}, f.label
        assert "017000801446:layer:AWSLambdaPowertoolsPythonV3" in f.props["layers"][0], f.label
        assert f.props["environment"]["variables"]["SPOTBOT_OPENSEARCH_ENDPOINT"].startswith(
            "https"
        )


# --- the state machine --------------------------------------------------------------------------
def test_deployed_definitions_equal_the_builders_and_lint(mocks: SpotbotMocks) -> None:
    from statelint.linter import Linter

    def check(d: stack.Deployment) -> Any:
        fns = {h: f.function.arn for h, f in d.functions.functions.items()}
        jds = {b: j.arn for b, j in d.compute.job_definitions.items()}
        return pulumi.Output.all(
            d.orchestration.tagging.urn,
            d.orchestration.tagging.definition,
            d.orchestration.retry.definition,
            d.compute.queue.arn,
            pulumi.Output.all(**fns),
            pulumi.Output.all(**jds),
            d.orchestration.tagging.logging_configuration,
            d.orchestration.tagging.tracing_configuration,
        ).apply(lambda v: _assert_definitions(v, Linter))

    _deploy(mocks, check)


def _assert_definitions(values: list[Any], linter: Any) -> None:
    urn, tagging, retry, queue, fns, jds, logging, tracing = values
    refs = TaggingRefs(
        partition="aws",
        init_function_arn=fns["init"],
        scan_function_arn=fns["scan"],
        endpoint_function_arn=fns["endpoint"],
        finalize_function_arn=fns["finalize"],
        cleanup_function_arn=fns["cleanup"],
        requeue_function_arn=fns["requeue"],
        job_queue_arn=queue,
        job_definition_arns=jds,
    )
    assert json.loads(tagging) == build_definition(refs), urn
    assert json.loads(retry) == build_retry_definition(refs), urn
    assert linter.validate(tagging) == [] and linter.validate(retry) == [], urn
    assert logging["level"] == "ALL" and logging["include_execution_data"], urn
    assert tracing["enabled"] is True, urn


def test_state_machine_role_allows_exactly_what_the_definition_calls(mocks: SpotbotMocks) -> None:
    _deploy(mocks, lambda d: d.orchestration.tagging.arn)
    machine = next(r for r in _of(mocks, "aws:sfn/stateMachine:StateMachine"))
    role_name = machine.props["roleArn"].rsplit("/", 1)[1]
    (policy,) = [
        p
        for p in _of(mocks, "aws:iam/rolePolicy:RolePolicy")
        if p.props["role"] == f"{role_name}-id"
    ]
    statements = {s.get("Sid"): s for s in json.loads(policy.props["policy"])["Statement"]}
    called = set()
    for text in (r.props["definition"] for r in _of(mocks, "aws:sfn/stateMachine:StateMachine")):
        called |= set(_function_names(json.loads(text)))
    invokable = {r for r in statements["InvokeJobFunctions"]["Resource"] if not r.endswith(":*")}
    assert invokable == called
    assert statements["BatchSyncRule"]["Resource"] == [
        _arn("events", "rule/StepFunctionsGetEventsForBatchJobsRule")
    ]
    assert statements["PollEndpoint"]["Action"] == ["sagemaker:DescribeEndpoint"]


def _function_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "FunctionName" in node:
            yield node["FunctionName"]
        for value in node.values():
            yield from _function_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _function_names(value)


# --- policy checks catch what they are for ------------------------------------------------------
def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}


@pytest.mark.parametrize(
    ("resource", "rule"),
    [
        (
            DeclaredResource(
                "aws:iam/rolePolicy:RolePolicy",
                "p",
                _doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
            ),
            "iam-no-star",
        ),
        (
            DeclaredResource(
                "aws:iam/rolePolicy:RolePolicy",
                "p",
                _doc({"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": ["*"]}),
            ),
            "iam-passrole",
        ),
        (DeclaredResource(policies.BUCKET, "b", {"bucket": "b"}, "b"), "bucket-private"),
        (
            DeclaredResource(
                policies.SECURITY_GROUP,
                "sg",
                {
                    "ingress": [
                        {
                            "fromPort": 22,
                            "toPort": 22,
                            "protocol": "tcp",
                            "ipv6CidrBlocks": ["::/0"],
                        }
                    ]
                },
            ),
            "sg-open-ingress",
        ),
        (DeclaredResource(policies.LOG_GROUP, "lg", {"name": "/x"}), "log-retention"),
        (
            DeclaredResource(
                policies.JOB_DEFINITION,
                "jd",
                {"containerProperties": json.dumps({"image": "repo/bot:latest"})},
            ),
            "image-pinned",
        ),
        (
            DeclaredResource(
                policies.JOB_DEFINITION,
                "jd",
                {"containerProperties": json.dumps({"image": "host:5000/repo/bot"})},
            ),
            "image-pinned",
        ),
    ],
)
def test_each_policy_flags_its_violation(resource: DeclaredResource, rule: str) -> None:
    assert rule in {v.rule for v in policies.check_all([resource])}


def test_pinned_images_pass() -> None:
    assert policies.image_reference_problem("r/b@sha256:" + "a" * 64) is None
    assert policies.image_reference_problem("host:5000/r/b:0.1.0") is None


# --- settings without Pulumi --------------------------------------------------------------------
def test_settings_default_to_a_working_deployment() -> None:
    settings = config.SpotbotSettings()
    assert settings.bots == config.BUILTIN_BOTS and settings.max_vcpus == 256
    assert settings.resources_of("car-model").vcpus == 4


def test_example_stack_file_parses_and_every_key_is_documented() -> None:
    import yaml

    settings = config.SpotbotSettings.from_mapping(
        {k: v for k, v in _example_config().items() if k.startswith("spotbot:")}
    )
    assert settings.on_demand_fallback and settings.search.instance_count == 2
    documented = set(yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"])
    keys = {f"spotbot:{info.alias}" for info in config.SpotbotSettings.model_fields.values()}
    assert keys == documented


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"onDemandFallback": "true"}, "onDemandMaxVcpus"),
        ({"subnetIds": '["subnet-1"]'}, "vpcId"),
        ({"imageTag": "latest"}, "never 'latest'"),
        ({"images": '{"ocr-zh": "repo/ocr:1"}'}, "by digest"),
        ({"imageDigests": '{"nobot": "sha256:00"}'}, "not deployed"),
        ({"bots": '["my-bot"]'}, r"no image for \['my-bot'\].*images/bots.json"),
        ({"maxVcpus": "2", "bots": '["car-model"]'}, "below one worker"),
        ({"logRetentionDays": "10"}, "logRetentionDays"),
        ({"allowedBuckets": '["arn:aws:s3:::b"]'}, "bucket names"),
        ({"instancePrices": '{"c6i.xlarge": {"spot": 0.07}}'}, "onDemand"),
        ({"instancePrices": '{"c6i.xlarge": {"on_demand": -1}}'}, "greater than 0"),
        ({"instancePrices": '{"C6I XL": {"on_demand": 0.2}}'}, "not instance types"),
    ],
)
def test_settings_reject_inconsistent_config(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config.SpotbotSettings.from_mapping(values)


# --- training ------------------------------------------------------------------------------------
def test_training_role_reaches_only_its_prefixes_and_only_it_can_be_passed(
    mocks: SpotbotMocks,
) -> None:
    # GIVEN the program WHEN it is built
    _deploy(mocks, lambda d: d.outputs["training_role_arn"])
    role = next(r for r in _of(mocks, "aws:iam/role:Role") if r.name == "training-role")
    (inline,) = [
        p
        for p in _of(mocks, "aws:iam/rolePolicy:RolePolicy")
        if p.props["role"] == "training-role-id"
    ]
    statements = {s["Sid"]: s for s in json.loads(inline.props["policy"])["Statement"]}
    # THEN SageMaker assumes it, and S3 access is per purpose: data read, checkpoints
    # read/write, model output write-only, base models read
    assert "sagemaker.amazonaws.com" in role.props["assumeRolePolicy"]
    bucket = "arn:aws:s3:::"
    assert all(
        (r.startswith(bucket) and r.endswith("/training/*/data/*")) or r.endswith("/models/*")
        for r in statements["ReadTrainingDataAndBaseModels"]["Resource"]
    )
    assert statements["Checkpoints"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert statements["Checkpoints"]["Resource"][0].endswith("/training/*/checkpoints/*")
    assert statements["ModelOutput"]["Action"] == ["s3:PutObject"]
    assert statements["ModelOutput"]["Resource"][0].endswith("/training/*/output/*")
    assert statements["Logs"]["Resource"] == [
        _arn("logs", "log-group:/aws/sagemaker/TrainingJobs*")
    ]
    assert not any(
        s["Resource"] == ["*"]
        for sid, s in statements.items()
        if sid not in ("EcrToken", "Metrics")
    )
    # AND whoever starts jobs may pass this role (to SageMaker) and no other
    (starter,) = [p for p in _of(mocks, "aws:iam/policy:Policy") if p.name == "training-starter"]
    starting = {s["Sid"]: s for s in json.loads(starter.props["policy"])["Statement"]}
    assert starting["PassTrainingRole"]["Resource"] == [role.props["arn"]]
    assert starting["PassTrainingRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert starting["TrainingJobs"]["Resource"] == [_arn("sagemaker", "training-job/spotbot-*")]
    assert policies.check_all(mocks.resources) == []
