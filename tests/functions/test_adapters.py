"""The boto3 adapters where moto cannot show the behaviour (Batch jobs never stay active there)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from spotbot.aws.orchestration import BatchJobs, StepFunctions, execution_arn
from spotbot.core.errors import CloudServiceError

QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/spotbot-queue"


def _client(service: str) -> Any:
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_cancel_terminates_only_the_jobs_workers_still_active() -> None:
    client = _client("batch")
    filters = [{"name": "JOB_NAME", "values": ["job-1-w*"]}]
    summaries = [
        {"jobId": "a", "jobName": "job-1-w0", "status": "RUNNING", "jobArn": "arn:a"},
        {"jobId": "b", "jobName": "job-1-w1", "status": "RUNNABLE", "jobArn": "arn:b"},
        {"jobId": "c", "jobName": "job-1-w2", "status": "SUCCEEDED", "jobArn": "arn:c"},
        {"jobId": "d", "jobName": "job-10-w0", "status": "RUNNING", "jobArn": "arn:d"},
    ]
    with Stubber(client) as stub:
        stub.add_response(
            "list_jobs", {"jobSummaryList": summaries}, {"jobQueue": QUEUE, "filters": filters}
        )
        for job_id in ("a", "b"):
            stub.add_response("terminate_job", {}, {"jobId": job_id, "reason": "cancelled"})
        assert BatchJobs(client, QUEUE).terminate_workers("job-1", "cancelled") == 2
        stub.assert_no_pending_responses()


def test_batch_errors_become_cloud_service_errors() -> None:
    client = _client("batch")
    with Stubber(client) as stub:
        stub.add_client_error("list_jobs", service_error_code="ServerException")
        with pytest.raises(CloudServiceError, match="ServerException"):
            BatchJobs(client, QUEUE).active("job-1-w")


def test_start_treats_execution_already_exists_as_the_existing_job() -> None:
    client = _client("stepfunctions")
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:tagging"
    arn = execution_arn(machine, "job-1")
    assert arn == "arn:aws:states:us-east-1:123456789012:execution:tagging:job-1"
    with Stubber(client) as stub:
        # a race: not there when described, there when started
        stub.add_client_error("describe_execution", service_error_code="ExecutionDoesNotExist")
        stub.add_client_error("start_execution", service_error_code="ExecutionAlreadyExists")
        assert StepFunctions(client).start(machine, "job-1", {"job_id": "job-1"}) == (arn, False)
