"""The core: records, model artifacts and their choice, job steps and limits, the shard worker,
the interfaces of sources, sinks and task stores, and the SQLite store.

It imports no cloud SDK, web framework, CLI library or Pulumi (checked by import-linter), so
the local runner, the Lambda functions and the Batch worker share every rule written here.
"""
