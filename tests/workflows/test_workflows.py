"""Tests of the state-machine builders: drift, lint, structure, payload budget, moto's parser."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from spotbot.core import envnames
from workflows import asl, render
from workflows import tagging as t
from workflows.render import REFERENCE_REFS

BUILDERS = {"tagging": t.build_definition, "retry": t.build_retry_definition}
Scope = tuple[str, ...]


def _states(definition: dict[str, Any], scope: Scope = ()) -> Iterator[tuple[Scope, str, dict]]:
    """Every state, with the scope (names of enclosing Parallel/Map states) it lives in."""
    for name, state in definition["States"].items():
        yield scope, name, state
        for branch in state.get("Branches", []):
            yield from _states(branch, (*scope, name))
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"], (*scope, name))


def _successors(state: dict[str, Any]) -> list[str]:
    nexts = [state["Next"]] if "Next" in state else []
    nexts += [rule["Next"] for rule in state.get("Choices", [])]
    nexts += [state["Default"]] if "Default" in state else []
    nexts += [c["Next"] for c in state.get("Catch", [])]
    return nexts


def _reachable(states: dict[str, dict], start: str, without: str | None = None) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name == without:
            continue
        seen.add(name)
        todo.extend(_successors(states[name]))
    return seen


@pytest.fixture(params=sorted(BUILDERS))
def definition(request: pytest.FixtureRequest) -> dict[str, Any]:
    return BUILDERS[request.param](REFERENCE_REFS)


# --- drift and lint -----------------------------------------------------------------------
def test_committed_json_matches_the_builders() -> None:
    # GIVEN the committed files WHEN the builders render THEN nothing drifted
    for name, text in render.render().items():
        committed = (render.HERE / name).read_text(encoding="utf-8")
        assert committed == text, f"{name} is stale: run python -m workflows.render"


def test_statelint_finds_no_problem(definition: dict[str, Any]) -> None:
    from statelint.linter import Linter

    assert Linter.validate(json.dumps(definition)) == []


@pytest.mark.stepfunctions
def test_moto_parser_accepts_both_machines() -> None:
    import boto3
    import moto

    with moto.mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        for name, text in render.render().items():
            sfn.create_state_machine(name=name.split(".")[0], definition=text, roleArn=role)
        assert len(sfn.list_state_machines()["stateMachines"]) == 2


# --- structure ------------------------------------------------------------------------------
def test_every_task_has_timeout_retry_and_catch(definition: dict[str, Any]) -> None:
    tasks = [(n, s) for _, n, s in _states(definition) if s["Type"] == "Task"]
    assert tasks
    for name, state in tasks:
        assert state.get("TimeoutSeconds", 0) > 0, name
        assert state.get("Retry"), name
        assert state.get("Catch"), name


def test_lambda_tasks_share_the_transient_retry_policy(definition: dict[str, Any]) -> None:
    for _, name, state in _states(definition):
        if state.get("Resource", "").endswith(":lambda:invoke"):
            assert state["Retry"] == t.lambda_retry(), name
            assert set(asl.LAMBDA_TRANSIENT_ERRORS) <= set(state["Retry"][0]["ErrorEquals"])


def test_every_transition_names_a_state_of_its_own_scope(definition: dict[str, Any]) -> None:
    scopes: dict[Scope, set[str]] = {}
    for scope, name, _ in _states(definition):
        scopes.setdefault(scope, set()).add(name)
    for scope, name, state in _states(definition):
        for target in _successors(state):
            assert target in scopes[scope], f"{name} -> unknown {target}"
        assert state["Type"] in ("Choice", "Succeed", "Fail") or "Next" in state or state.get("End")


def test_state_names_are_unique_across_scopes(definition: dict[str, Any]) -> None:
    names = [n for _, n, _ in _states(definition)]
    assert len(names) == len(set(names))


def test_every_catch_leads_through_cleanup(definition: dict[str, Any]) -> None:
    top = definition["States"]
    for scope, name, state in _states(definition):
        for catcher in state.get("Catch", []):
            if name == t.CLEANUP_JOB:
                assert catcher["Next"] == t.CLEANUP_FAILED
            elif not scope:
                assert t.CLEANUP_JOB in _reachable(top, catcher["Next"]), name
            else:
                # Inside a branch: re-raise under a name of ours (never "States.", which states
                # may not report) with the caught error whole in the cause; the enclosing
                # state catches it.
                target = _scope_states(definition, scope)[catcher["Next"]]
                assert target["Type"] == "Fail" and target["Error"].startswith("Spotbot."), name
                assert target["CausePath"] == t.RERAISED_CAUSE, name
                assert t.CLEANUP_JOB in _reachable(top, top[scope[0]]["Catch"][0]["Next"])


def _scope_states(definition: dict[str, Any], scope: Scope) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for s, n, state in _states(definition):
        if s == scope:
            found[n] = state
    return found


def test_success_is_reachable_only_through_cleanup(definition: dict[str, Any]) -> None:
    top, start = definition["States"], definition["StartAt"]
    assert t.JOB_SUCCEEDED in _reachable(top, start)
    assert t.JOB_SUCCEEDED not in _reachable(top, start, without=t.CLEANUP_JOB)
    ends = {n for n, s in top.items() if s["Type"] in ("Succeed", "Fail")}
    assert ends - _reachable(top, start, without=t.CLEANUP_JOB) == ends


def test_results_go_under_their_own_keys_and_no_jsonata(definition: dict[str, Any]) -> None:
    text = json.dumps(definition)
    assert "QueryLanguage" not in text and "{%" not in text
    for _, name, state in _states(definition):
        if state["Type"] in ("Task", "Parallel", "Map"):
            assert state.get("ResultPath", "$").startswith("$.") or name == t.SUBMIT_ARRAY, name
        if state["Type"] in ("Task", "Parallel"):
            assert "ResultSelector" in state, name
        if "ToleratedFailurePercentage" in state:
            assert isinstance(state["ToleratedFailurePercentage"], float)


def test_waits_take_their_seconds_from_the_data(definition: dict[str, Any]) -> None:
    waits = [s for _, _, s in _states(definition) if s["Type"] == "Wait"]
    assert waits and all(set(s) & {"Seconds", "Timestamp"} == set() for s in waits)
    assert all(s["SecondsPath"] == "$.job.poll_seconds" for s in waits)


def test_workers_are_batch_arrays_with_the_shared_env_names(definition: dict[str, Any]) -> None:
    submit = definition["States"][t.RUN_WORKERS]["ItemProcessor"]["States"][t.SUBMIT_ARRAY]
    assert submit["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    params = submit["Parameters"]
    assert params["ArrayProperties"] == {"Size.$": "$.chunk.size"}
    assert params["JobQueue"] == REFERENCE_REFS.job_queue_arn
    names = tuple(e["Name"] for e in params["ContainerOverrides"]["Environment"])
    assert names == envnames.WORKER_JOB_VARIABLES
    assert (
        definition["States"][t.RUN_WORKERS]["MaxConcurrency"]
        == REFERENCE_REFS.max_concurrent_arrays
    )


def test_endpoint_is_polled_by_the_machine_not_by_a_lambda() -> None:
    branch = t.build_definition(REFERENCE_REFS)["States"][t.PREPARE]["Branches"][1]["States"]
    describe = branch[t.DESCRIBE_ENDPOINT]
    assert describe["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint"
    assert branch[t.WAIT_FOR_ENDPOINT]["Next"] == t.DESCRIBE_ENDPOINT
    rules = branch[t.ENDPOINT_STATUS]["Choices"]
    assert {
        "Variable": "$.describe.status",
        "StringEquals": "Failed",
        "Next": t.ENDPOINT_FAILED,
    } in rules
    assert rules[-1]["NumericGreaterThanEquals"] == REFERENCE_REFS.max_endpoint_polls


def test_partition_comes_from_the_refs() -> None:
    refs = dataclasses.replace(REFERENCE_REFS, partition="aws-cn")
    for build in BUILDERS.values():
        resources = {s["Resource"] for _, _, s in _states(build(refs)) if "Resource" in s}
        assert resources and all(r.startswith("arn:aws-cn:states:::") for r in resources)


def test_refs_reject_impossible_limits() -> None:
    with pytest.raises(ValueError, match="max_array_size"):
        dataclasses.replace(REFERENCE_REFS, max_array_size=20_000)
    with pytest.raises(ValueError, match="max_array_size"):  # 5 shards cannot go in arrays of 2
        dataclasses.replace(REFERENCE_REFS, max_array_size=2)
    with pytest.raises(ValueError, match="job definition"):
        dataclasses.replace(REFERENCE_REFS, job_definition_arns={})


# --- chunks and the payload budget ----------------------------------------------------------
@pytest.mark.parametrize("shards", [2, 10_000, 10_001, 25_000, 100_000])
def test_chunks_cover_every_shard_once_within_batch_limits(shards: int) -> None:
    chunks = t.plan_chunks(shards)
    assert sum(c["size"] for c in chunks) == shards
    assert all(2 <= c["size"] <= 10_000 for c in chunks)
    assert [c["offset"] for c in chunks] == [
        sum(c["size"] for c in chunks[:i]) for i in range(len(chunks))
    ]
    assert len(chunks) == -(-shards // 10_000)


@pytest.mark.parametrize("max_array_size", [3, 4, 7, 10])
def test_small_array_limits_never_make_a_one_child_array(max_array_size: int) -> None:
    # Batch rejects an array of 1; every shard count splits into arrays of 2..max_array_size
    for shards in range(2, 60):
        chunks = t.plan_chunks(shards, max_array_size)
        assert sum(c["size"] for c in chunks) == shards
        assert all(2 <= c["size"] <= max_array_size for c in chunks), (shards, chunks)
    with pytest.raises(ValueError, match="at least 3"):
        t.plan_chunks(5, 2)


def test_ten_million_assets_fit_the_payload_budget_on_paper() -> None:
    # GIVEN 10 million assets over the largest shard count the refs allow (10 arrays)
    data = t.worst_case_state_data(REFERENCE_REFS, shards=REFERENCE_REFS.max_shards, assets=10**7)
    # THEN the largest state data stays under 32 KB, and the assets only add digits
    assert len(data["job"]["chunks"]) == 10
    assert t.payload_bytes(data) < t.STATE_PAYLOAD_BUDGET
    assert (
        t.payload_bytes(t.worst_case_state_data(REFERENCE_REFS, 100_000, 10**9))
        - t.payload_bytes(data)
        < 100
    )
    assert t.max_shards_within_budget(REFERENCE_REFS) > REFERENCE_REFS.max_shards


def test_the_budget_check_catches_an_unbounded_chunk_list() -> None:
    assert (
        t.payload_bytes(t.worst_case_state_data(REFERENCE_REFS, 10**7, 10**7))
        > t.STATE_PAYLOAD_BUDGET
    )


# --- the contract, executed by moto's interpreter with stand-in handlers ------------------
def _stand_in_handlers(calls: list[tuple[str, dict]], endpoint_status: str) -> Any:
    """Handlers that answer exactly as the contract in workflows.tagging says."""

    def init(event: dict) -> dict:
        req = event["request"]
        shards = req.get("shards", event["limits"]["default_shards"])
        return {
            "job_id": req.get("job_id") or event["execution_name"],
            "bot": req["bot"],
            "model_version": "builtin",
            "inference": req.get("inference", "in-container"),
            "job_definition": event["job_definitions"][req["bot"]],
            "shards": shards,
            "chunks": t.plan_chunks(shards),
            "max_failure_pct": 100.0,
            "poll_seconds": req.get("poll_seconds", 0),
        }

    def scan(event: dict) -> dict:
        pages = event["cursor"]["pages"] + 1
        return {
            "done": pages == 3,
            "continuation_token": None if pages == 3 else f"t{pages}",
            "pages": pages,
            "scanned": pages * 10,
            "accepted": 0,
        }

    def endpoint(event: dict) -> dict:
        return {"endpoint_name": "spotbot-missing", "created": True, "status": endpoint_status}

    def finalize(event: dict) -> dict:
        return {
            "status": "SUCCEEDED",
            "error": "",
            "cause": "",
            "counts": {"total": 0},
            "failed_pct": 0.0,
            "summary_uri": "s3://out/summary.json",
        }

    def cleanup(event: dict) -> dict:
        failure = event["outcome"]["failure"]
        return {
            "job_id": event["request"]["job_id"],
            "status": event["outcome"]["status"],
            "error": failure["Error"],
            "cause": failure.get("Cause", "")[:1000],
            "endpoint_deleted": True,
        }

    handlers = {
        "init": init,
        "scan": scan,
        "endpoint": endpoint,
        "finalize": finalize,
        "cleanup": cleanup,
    }

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, *args: Any) -> bytes:
        short = function_name.rsplit("spotbot-", 1)[1]
        event = json.loads(body)
        calls.append((short, event))
        return json.dumps(handlers[short](event)).encode()

    return invoke


# moto's ASL parser needs antlr4-python3-runtime 4.13 and omegaconf (via AutoGluon) pins 4.9:
# these run in the .venv-sfn environment (`-m stepfunctions`), where a broken parser fails.
@pytest.mark.integration
@pytest.mark.stepfunctions
@pytest.mark.parametrize(
    ("inference", "endpoint_status", "expected"),
    [("in-container", "", "SUCCEEDED"), ("endpoint", "Creating", "FAILED")],
)
def test_moto_runs_the_contract_to_cleanup(
    monkeypatch: pytest.MonkeyPatch, inference: str, endpoint_status: str, expected: str
) -> None:
    import boto3
    import moto
    from moto.awslambda_simple.models import LambdaSimpleBackend

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", _stand_in_handlers(calls, endpoint_status))
    config = {"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}
    with moto.mock_aws(config=config):  # type: ignore[arg-type]
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="tagging", definition=render.render()["tagging.asl.json"], roleArn=role
        )["stateMachineArn"]
        request = {
            "job_id": "job-1",
            "bot": "ocr-zh",
            "source": "s3://in/",
            "output": "s3://out/",
            "inference": inference,
            "poll_seconds": 0,
        }
        run = sfn.start_execution(stateMachineArn=arn, name="job-1", input=json.dumps(request))
        result = _wait(sfn, run["executionArn"])
    # THEN the loop ran three pages, cleanup ran last, and a failure keeps its SageMaker cause
    assert result["status"] == expected
    assert [name for name, _ in calls][-1] == "cleanup"
    assert [name for name, _ in calls].count("scan") == 3
    if expected == "FAILED":
        # the branch re-raises moto's sagemaker.sagemakerException, which the cause keeps
        assert result["error"] == "Spotbot.EndpointStepFailed"
        assert "spotbot-missing" in result["cause"]
        assert json.loads(result["cause"])["Error"].lower().startswith("sagemaker.")
        assert calls[-1][1]["outcome"]["status"] == "FAILED"


def _wait(sfn: Any, execution_arn: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("execution did not finish")
