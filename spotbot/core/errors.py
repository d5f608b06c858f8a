"""The project's own exceptions: adapters map them to exit codes, HTTP codes and Catch names.

The state machine catches the cloud errors by class name, and the API maps them to HTTP codes
in one place, so these names are part of the contract: rename one and both must follow."""


class SpotbotError(Exception):
    """Base of every error spotbot raises on purpose."""


class UsageError(SpotbotError):
    """The caller asked for something that cannot be done as asked (bad option, unknown bot...)."""


class UnknownBotError(UsageError):
    pass


class SourceError(UsageError):
    """The source cannot be listed or read as a whole."""


class OutputError(UsageError):
    """The output location cannot be written."""


class JobNotFoundError(UsageError):
    pass


class JobLockedError(UsageError):
    """Another live process is already running this job."""


class ModelError(SpotbotError):
    """A model directory is missing, corrupt, or made for another bot."""


class AssetError(SpotbotError):
    """One asset cannot be tagged; it fails its own task and nothing else."""


class StoreError(SpotbotError):
    """The task store could not carry out an operation."""


#: The exit code of a process an EnvironmentFault stopped (sysexits' EX_TEMPFAIL): the CLI's,
#: and the Batch worker's, on which the job definition retries the child.
ENVIRONMENT_EXIT_CODE = 75


class EnvironmentFault(SpotbotError):
    """The environment failed the job, not an asset: no space left, a read-only or vanished
    output, an I/O error. The job stops INTERRUPTED and `resume` finishes it once the cause
    is gone; nothing done so far is lost."""


class BotUnavailableError(SpotbotError):
    """The bot's backend (a model endpoint) cannot answer at all.

    Raised from `Bot.predict`, it stops the worker instead of failing the batch: an outage
    must not turn every remaining asset into a FAILED task. The page's unfinished tasks go
    back to PENDING for the next worker.
    """


# -- the cloud's ----------------------------------------------------------------------------
class BucketNotAllowedError(UsageError):
    """A source or output outside the buckets this deployment may read and write."""


class ImageNotAllowedError(UsageError):
    """A custom bot's image outside the repositories this deployment may run."""


class JobCancelledError(SpotbotError):
    """The job was cancelled: the running step stops so the state machine's Catch cleans up."""


class JobConflictError(UsageError):
    """The request clashes with the job's state (cancel a finished job, retry a running one,
    reuse a client token for a different request)."""


class BotNotFoundError(UsageError):
    """No built-in or registered bot by that name (GET /bots/{name})."""


class CloudServiceError(SpotbotError):
    """An AWS call failed for a reason that is not the caller's (throttling, service errors)."""


def one_line(message: object, limit: int = 300) -> str:
    """An error message as users see it: one line, at most `limit` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
