"""Custom bots in the cloud: registered and removed together with their Batch job definition.

Registering (PUT /bots/{name}) checks the image against the repositories this deployment may
run, registers the bot's job definition, then stores the bot's document naming it: InitJob
hands that definition to the workers' Batch arrays. Removing (DELETE /bots/{name}) deletes
the document, then deregisters the definition. Both are refused while an unfinished job uses
the bot: its arrays would be submitted with a definition that is gone or changed.
"""

from __future__ import annotations

import logging
from typing import Any

from spotbot.aws.catalog import BotCatalog, CustomBotSpec
from spotbot.aws.job_definitions import BotJobDefinitions, image_repository
from spotbot.aws.settings import ConfigError
from spotbot.core.errors import BotNotFoundError, ImageNotAllowedError, JobConflictError
from spotbot.core.records import JobStatus
from spotbot.core.store import TaskStore

log = logging.getLogger(__name__)

#: How many of the newest jobs are looked at for users of a bot (as for endpoints' users).
USERS_SCAN_LIMIT = 1000


def jobs_using(store: TaskStore, bot: str) -> list[str]:
    """Ids of the unfinished jobs of `bot`, newest first."""
    return [
        job.id
        for job in store.list_jobs(limit=USERS_SCAN_LIMIT)
        if job.bot == bot and not job.status.is_final and job.status != JobStatus.INTERRUPTED
    ]


def _refuse_while_used(store: TaskStore, bot: str, action: str) -> None:
    users = jobs_using(store, bot)
    if users:
        shown = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
        raise JobConflictError(
            f"bot {bot!r} is used by unfinished jobs ({shown}): {action} it once they ended"
        )


def _definitions(definitions: BotJobDefinitions | None) -> BotJobDefinitions:
    if definitions is None:
        raise ConfigError("this deployment is not configured to run custom bots")
    return definitions


def register_custom_bot(
    catalog: BotCatalog,
    definitions: BotJobDefinitions | None,
    store: TaskStore,
    spec: CustomBotSpec,
) -> CustomBotSpec:
    """Register (or replace) a custom bot and the job definition its jobs run on."""
    batch = _definitions(definitions)
    catalog.check_custom_name(spec.name)
    if not batch.compute.allows_image(spec.image_uri):
        allowed = ", ".join(batch.compute.image_repositories) or "none"
        raise ImageNotAllowedError(
            f"the image repository {image_repository(spec.image_uri)!r} is not one this"
            f" deployment runs (allowed: {allowed})"
        )
    previous = catalog.custom(spec.name)
    if previous is not None:
        _refuse_while_used(store, spec.name, "register")
    spec.job_definition_arn = batch.register(spec)
    catalog.register(spec)
    if previous is not None and previous.job_definition_arn not in (None, spec.job_definition_arn):
        batch.deregister(str(previous.job_definition_arn))
    log.info("bot %s registered on %s", spec.name, spec.job_definition_arn)
    return spec


def remove_custom_bot(
    catalog: BotCatalog, definitions: BotJobDefinitions | None, store: TaskStore, name: str
) -> dict[str, Any]:
    """Remove a custom bot: its document first (no new job can start), then its definition."""
    catalog.check_custom_name(name, verb="removed")
    spec = catalog.custom(name)
    if spec is None:
        raise BotNotFoundError(f"no registered bot named {name!r}")
    _refuse_while_used(store, name, "remove")
    catalog.remove(name)
    deregistered = False
    if spec.job_definition_arn:
        deregistered = _definitions(definitions).deregister(spec.job_definition_arn)
    log.info("bot %s removed (job definition deregistered: %s)", name, deregistered)
    return {
        "name": name,
        "removed": True,
        "job_definition_arn": spec.job_definition_arn,
        "job_definition_deregistered": deregistered,
    }
