"""Small pure helpers that build Amazon States Language (ASL) fragments as plain dicts.

No Pulumi, no boto3: the state-machine builders, infra, tests and the local runner share
these. Every helper returns a new dict; ``None`` fields are left out so the rendered JSON
stays minimal and diffs stay readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

State = dict[str, Any]

#: Errors of the Lambda service itself (not of the function's code): safe to retry.
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
TIMEOUT = "States.Timeout"
ALL_ERRORS = "States.ALL"


def integration_arn(partition: str, service: str, action: str, sync: bool = False) -> str:
    """The Resource ARN of a Step Functions service integration.

    ``integration_arn("aws", "lambda", "invoke")`` -> ``arn:aws:states:::lambda:invoke``;
    ``service="aws-sdk:sagemaker"`` gives an AWS SDK integration; ``sync`` adds ``.sync``.
    """
    if not partition or not service or not action:
        raise ValueError("partition, service and action are required")
    return f"arn:{partition}:states:::{service}:{action}{'.sync' if sync else ''}"


def _compact(fields: Mapping[str, Any]) -> State:
    return {key: value for key, value in fields.items() if value is not None}


def retry(
    errors: Iterable[str],
    *,
    interval_seconds: int = 2,
    max_attempts: int = 3,
    backoff_rate: float = 2.0,
    max_delay_seconds: int | None = None,
    jitter: bool = False,
) -> State:
    """One retrier: exponential backoff over the named errors."""
    names = list(errors)
    if not names:
        raise ValueError("a retrier needs at least one error name")
    return _compact(
        {
            "ErrorEquals": names,
            "IntervalSeconds": interval_seconds,
            "MaxAttempts": max_attempts,
            "BackoffRate": float(backoff_rate),
            "MaxDelaySeconds": max_delay_seconds,
            "JitterStrategy": "FULL" if jitter else None,
        }
    )


def catch(
    next_state: str, errors: Iterable[str] = (ALL_ERRORS,), result_path: str = "$.error"
) -> State:
    """One catcher: on the named errors go to ``next_state``, keeping the input and the error."""
    return {"ErrorEquals": list(errors), "Next": next_state, "ResultPath": result_path}


def task(
    resource: str,
    *,
    timeout_seconds: int,
    retry_policy: Sequence[State],
    catchers: Sequence[State],
    parameters: Mapping[str, Any] | None = None,
    result_selector: Mapping[str, Any] | None = None,
    result_path: str | None = None,
    next_state: str | None = None,
    comment: str | None = None,
) -> State:
    """A Task state. A timeout, a retry policy and a catch are required, not optional."""
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")
    if not catchers:
        raise ValueError("every task needs a Catch")
    return _compact(
        {
            "Type": "Task",
            "Comment": comment,
            "Resource": resource,
            "Parameters": dict(parameters) if parameters is not None else None,
            "ResultSelector": dict(result_selector) if result_selector is not None else None,
            "ResultPath": result_path,
            "TimeoutSeconds": timeout_seconds,
            "Retry": [dict(r) for r in retry_policy] or None,
            "Catch": [dict(c) for c in catchers],
            **_transition(next_state),
        }
    )


def lambda_invoke(
    partition: str,
    function_arn: str,
    payload: Mapping[str, Any],
    *,
    timeout_seconds: int,
    retry_policy: Sequence[State],
    catchers: Sequence[State],
    result_selector: Mapping[str, Any],
    result_path: str,
    next_state: str | None = None,
    comment: str | None = None,
) -> State:
    """A ``lambda:invoke`` task; select from ``$.Payload`` in ``result_selector``."""
    return task(
        integration_arn(partition, "lambda", "invoke"),
        parameters={"FunctionName": function_arn, "Payload": dict(payload)},
        result_selector=result_selector,
        result_path=result_path,
        timeout_seconds=timeout_seconds,
        retry_policy=retry_policy,
        catchers=catchers,
        next_state=next_state,
        comment=comment,
    )


def batch_submit_sync(
    partition: str,
    *,
    job_queue: str,
    job_name_path: str,
    job_definition_path: str,
    array_size_path: str,
    environment: Sequence[tuple[str, str]],
    timeout_seconds: int,
    retry_policy: Sequence[State],
    catchers: Sequence[State],
    result_selector: Mapping[str, Any],
    result_path: str | None = None,
    next_state: str | None = None,
    comment: str | None = None,
) -> State:
    """A ``batch:submitJob.sync`` task for an array job.

    ``environment`` is ``(name, reference)`` pairs: a reference that starts with ``$``
    or ``States.`` is evaluated (``Value.$``), anything else is a literal value.
    """
    env = [
        {"Name": name, "Value.$": ref} if _is_reference(ref) else {"Name": name, "Value": ref}
        for name, ref in environment
    ]
    return task(
        integration_arn(partition, "batch", "submitJob", sync=True),
        parameters={
            "JobName.$": job_name_path,
            "JobQueue": job_queue,
            "JobDefinition.$": job_definition_path,
            "ArrayProperties": {"Size.$": array_size_path},
            "ContainerOverrides": {"Environment": env},
        },
        result_selector=result_selector,
        result_path=result_path,
        timeout_seconds=timeout_seconds,
        retry_policy=retry_policy,
        catchers=catchers,
        next_state=next_state,
        comment=comment,
    )


def choice(rules: Sequence[State], default: str, comment: str | None = None) -> State:
    """A Choice state; build rules with :func:`when`."""
    if not rules:
        raise ValueError("a Choice needs at least one rule")
    return _compact(
        {
            "Type": "Choice",
            "Comment": comment,
            "Choices": [dict(r) for r in rules],
            "Default": default,
        }
    )


def when(variable: str, comparison: str, value: Any, next_state: str) -> State:
    """One Choice rule, e.g. ``when("$.job.inference", "StringEquals", "endpoint", "Ensure")``."""
    return {"Variable": variable, comparison: value, "Next": next_state}


def pass_state(
    *,
    parameters: Mapping[str, Any] | None = None,
    result: Any = None,
    result_path: str | None = None,
    next_state: str | None = None,
    comment: str | None = None,
) -> State:
    """A Pass state that shapes data: ``parameters`` (evaluated) or a literal ``result``."""
    return _compact(
        {
            "Type": "Pass",
            "Comment": comment,
            "Parameters": dict(parameters) if parameters is not None else None,
            "Result": result,
            "ResultPath": result_path,
            **_transition(next_state),
        }
    )


def wait_seconds_path(seconds_path: str, next_state: str, comment: str | None = None) -> State:
    """A Wait whose duration comes from the data, so tests can make it short."""
    return _compact(
        {"Type": "Wait", "Comment": comment, "SecondsPath": seconds_path, "Next": next_state}
    )


def fail(
    *,
    error: str | None = None,
    cause: str | None = None,
    error_path: str | None = None,
    cause_path: str | None = None,
    comment: str | None = None,
) -> State:
    """A Fail state with a static or a data-driven error and cause."""
    if (error is None) == (error_path is None) or (cause is None) == (cause_path is None):
        raise ValueError("give exactly one of error/error_path and one of cause/cause_path")
    return _compact(
        {
            "Type": "Fail",
            "Comment": comment,
            "Error": error,
            "ErrorPath": error_path,
            "Cause": cause,
            "CausePath": cause_path,
        }
    )


def succeed(comment: str | None = None) -> State:
    return _compact({"Type": "Succeed", "Comment": comment})


def machine(start_at: str, states: Mapping[str, State], comment: str | None = None) -> State:
    """A state machine (or a Parallel branch / Map processor) from its states."""
    if start_at not in states:
        raise ValueError(f"StartAt {start_at!r} is not a state")
    return _compact({"Comment": comment, "StartAt": start_at, "States": dict(states)})


def _transition(next_state: str | None) -> State:
    return {"Next": next_state} if next_state else {"End": True}


def _is_reference(value: str) -> bool:
    return value.startswith("$") or value.startswith("States.")
