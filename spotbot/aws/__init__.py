"""Adapters to AWS: S3 sources and sinks, the OpenSearch task store, the S3 model registry,
the SageMaker endpoint bot, the bot catalog, Step Functions and Batch, training jobs.

Each implements an interface of `spotbot.core` and turns the SDK's errors into the project's
own (`spotbot.core.errors`).
"""
