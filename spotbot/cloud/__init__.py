"""The cloud side of spotbot: settings from the environment, the S3 model registry, AWS adapters."""
