"""Each job's end as an EventBridge event: rules route it to SNS, e-mail, chat or a queue."""

from __future__ import annotations

import json
from typing import Any

from spotbot.aws.clients import aws_errors

SOURCE = "spotbot"
JOB_ENDED = "Spotbot Job Ended"


class JobEvents:
    """Publishes ``Spotbot Job Ended`` (source ``spotbot``) on an event bus."""

    def __init__(self, client: Any, bus: str = "default"):
        self.client, self.bus = client, bus

    def job_ended(self, detail: dict[str, Any]) -> None:
        """`detail`: job_id, bot, status (SUCCEEDED | FAILED | CANCELLED | BUDGET_EXCEEDED), counts, error, cause."""
        with aws_errors("publish the job's end"):
            answer = self.client.put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": JOB_ENDED,
                        "Detail": json.dumps(detail, ensure_ascii=False),
                        "EventBusName": self.bus,
                    }
                ]
            )
        if answer.get("FailedEntryCount"):
            entry = answer["Entries"][0]
            raise RuntimeError(f"EventBridge refused the event: {entry.get('ErrorCode')}")
