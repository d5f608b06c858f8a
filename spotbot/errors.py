"""The project's own exceptions, so adapters can map them to exit codes, HTTP codes and Catch names."""


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
