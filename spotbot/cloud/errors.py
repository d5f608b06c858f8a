"""Errors of the cloud half: raised by the adapters and the job logic, caught by name by the state
machine (Catch on the class name) and mapped to HTTP codes by the API in one place."""

from __future__ import annotations

from spotbot.errors import SpotbotError, UsageError


class BucketNotAllowedError(UsageError):
    """A source or output outside the buckets this deployment may read and write."""


class JobCancelledError(SpotbotError):
    """The job was cancelled: the running step stops so the state machine's Catch cleans up."""


class JobConflictError(UsageError):
    """The request clashes with the job's state (cancel a finished job, retry a running one,
    reuse a client token for a different request)."""


class BotNotFoundError(UsageError):
    """No built-in or registered bot by that name (GET /bots/{name})."""


class CloudServiceError(SpotbotError):
    """An AWS call failed for a reason that is not the caller's (throttling, service errors)."""
