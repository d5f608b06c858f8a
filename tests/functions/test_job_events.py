"""Every job's end is published as an EventBridge event, whatever way it ended."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from tests.functions.test_steps import init_event, put_assets

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]


def _cleanup_event(job_id: str, status: str) -> dict[str, Any]:
    failure = {"Error": "", "Cause": ""} if status == "SUCCEEDED" else {"Error": "X", "Cause": "y"}
    return {
        "request": {"job_id": job_id},
        "execution_name": job_id,
        "outcome": {"status": status, "failure": failure},
    }


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED"])
def test_cleanup_publishes_the_jobs_end_with_its_counts(
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    aws: dict[str, Any],
    outcome: str,
) -> None:
    import boto3

    # GIVEN a rule that sends spotbot's job events to a queue (as a user's rule would to SNS)
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="job-ends")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events", region_name="us-east-1")
    pattern = {"source": ["spotbot"], "detail-type": ["Spotbot Job Ended"]}
    events.put_rule(Name="job-ends", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="job-ends", Targets=[{"Id": "q", "Arn": arn}])
    # AND a job that was scanned
    put_assets(aws["s3"], ["a.jpg", "b.jpg", "c.txt"])
    load_handler("init").lambda_handler(init_event("job-ev"), lambda_context)
    scan = load_handler("scan")
    scan.lambda_handler({"job_id": "job-ev"}, lambda_context)
    # WHEN the machine's last step cleans it up
    load_handler("cleanup").lambda_handler(_cleanup_event("job-ev", outcome), lambda_context)
    # THEN one event says how it ended, with its counts and where its output is
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    (event,) = [json.loads(m["Body"]) for m in messages]
    assert event["source"] == "spotbot" and event["detail-type"] == "Spotbot Job Ended"
    detail = event["detail"]
    assert detail["job_id"] == "job-ev" and detail["bot"] == "ocr-zh"
    assert detail["status"] == outcome
    assert detail["counts"]["total"] == 3 and detail["counts"]["skipped"] == 1
    assert detail["output"].startswith("s3://")
