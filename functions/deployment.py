"""The deployment a handler runs in: settings read and checked at cold start, clients made lazily.

Each handler module builds one ``Deployment`` at import (cold start), naming the environment
variables it cannot work without, so a function deployed without one fails at once with
ConfigError naming it. Clients and the store connection are made on first use and then kept
for the life of the execution environment.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from spotbot.aws.catalog import BotCatalog, CatalogResolver
from spotbot.aws.clients import boto_client
from spotbot.aws.job_definitions import BotJobDefinitions
from spotbot.aws.job_events import JobEvents
from spotbot.aws.orchestration import BatchJobs, StepFunctions
from spotbot.aws.settings import CloudSettings
from spotbot.cloud.endpoints import SageMakerEndpoints
from spotbot.core import envnames
from spotbot.core.store import TaskStore

#: Every function needs the index; the rest is per function.
BASE_REQUIRED = (envnames.OPENSEARCH_ENDPOINT,)


class Deployment:
    def __init__(self, *required: str):
        self.settings = CloudSettings.from_env(required=(*BASE_REQUIRED, *required))

    @cached_property
    def store(self) -> TaskStore:
        store: TaskStore = self.settings.open_store()
        return store

    @cached_property
    def s3(self) -> Any:
        return boto_client("s3", self.settings.region)

    @cached_property
    def ec2(self) -> Any:
        return boto_client("ec2", self.settings.region)

    @cached_property
    def pricing(self) -> Any:
        # The Pricing API answers in us-east-1 (and two other regions) only.
        return boto_client("pricing", "us-east-1")

    @cached_property
    def catalog(self) -> BotCatalog:
        return BotCatalog(self.settings.artifacts_bucket, client=self.s3)

    @cached_property
    def resolver(self) -> CatalogResolver:
        return CatalogResolver(self.settings.registry(client=self.s3))

    @cached_property
    def stepfunctions(self) -> StepFunctions:
        return StepFunctions(boto_client("stepfunctions", self.settings.region))

    @cached_property
    def batch(self) -> BatchJobs | None:
        queue = self.settings.job_queue_arn
        return BatchJobs(boto_client("batch", self.settings.region), queue) if queue else None

    @cached_property
    def job_definitions(self) -> BotJobDefinitions | None:
        """Custom bots' Batch job definitions; None where the deployment runs no custom bots."""
        compute = self.settings.custom_bot_compute
        if compute is None:
            return None
        client = boto_client("batch", self.settings.region)
        return BotJobDefinitions(
            compute, self.settings.worker_environment, self.settings.region, client=client
        )

    @cached_property
    def job_events(self) -> JobEvents:
        bus = os.environ.get(envnames.EVENT_BUS) or "default"
        return JobEvents(boto_client("events", self.settings.region), bus)

    @cached_property
    def endpoints(self) -> SageMakerEndpoints:
        return SageMakerEndpoints(
            boto_client("sagemaker", self.settings.region),
            self.settings.sagemaker_role_arn,
            self.settings.endpoint_instance_type,
        )
