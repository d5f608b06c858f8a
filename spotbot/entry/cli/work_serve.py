"""Container entry points: the Batch worker (`work`) and the SageMaker serving contract (`serve`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from spotbot.aws.settings import ConfigError
from spotbot.core.worker import WorkerConfig
from spotbot.entry.batch_worker import EXIT_USAGE, WorkerParams
from spotbot.entry.batch_worker import main as work_main
from spotbot.entry.cli.common import (
    fail,
    main,
    threads_option,
)
from spotbot.entry.serving import ServeOptions
from spotbot.entry.serving import main as serve_main


# -- container entry points: the Batch worker and the SageMaker serving contract ------------
@main.command()
@click.option("--job-id", default=None, help="The job [env SPOTBOT_JOB_ID].")
@click.option(
    "--shard",
    type=click.IntRange(min=0),
    default=None,
    help="The shard [default: SPOTBOT_SHARD_OFFSET + AWS_BATCH_JOB_ARRAY_INDEX].",
)
@click.option(
    "--bot", default=None, help="Bot name or module:Class [env SPOTBOT_BOT; default: the job's]."
)
@click.option(
    "--model-version", default=None, help="Expected model version [env SPOTBOT_MODEL_VERSION]."
)
@click.option(
    "--inference",
    type=click.Choice(["in-container", "endpoint"]),
    default=None,
    help="Tag here or through the SageMaker endpoint [env SPOTBOT_INFERENCE; default: in-container].",
)
@click.option(
    "--endpoint-name", default=None, help="SageMaker endpoint [env SPOTBOT_ENDPOINT_NAME]."
)
@click.option(
    "--model-cache",
    type=click.Path(file_okay=False),
    default=None,
    help="Where downloaded models are kept [env SPOTBOT_MODEL_CACHE].",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Assets per model call."
)
@click.option("--page-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--read-concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@threads_option
@click.option(
    "--stop-grace",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a stop signal waits for the batch in hand before exiting without it.",
)
def work(
    job_id: str | None,
    shard: int | None,
    bot: str | None,
    model_version: str | None,
    inference: str | None,
    endpoint_name: str | None,
    model_cache: str | None,
    batch_size: int | None,
    page_size: int,
    read_concurrency: int,
    threads: int,
    stop_grace: float,
) -> None:
    """Work one shard of a cloud job (the Batch worker); exit 143 when stopped early."""
    try:
        params = WorkerParams.from_env(
            job_id=job_id,
            shard=shard,
            bot=bot,
            model_version=model_version,
            inference=inference,
            endpoint_name=endpoint_name,
            model_cache=Path(model_cache) if model_cache else None,
            threads=threads,
            stop_grace_seconds=stop_grace,
            config=WorkerConfig(
                page_size=page_size, batch_size=batch_size, read_concurrency=read_concurrency
            ),
        )
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
        return
    sys.exit(work_main(params))


@main.command()
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Model folder with bot.json [env SM_MODEL_DIR; default: /opt/ml/model]; empty or"
    " missing: the bot's built-in model.",
)
@click.option("--bot", default=None, help="Bot name or module:Class [env SPOTBOT_BOT].")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="[env SAGEMAKER_BIND_TO_PORT; 8080]"
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Larger request bodies get 413 [env SPOTBOT_SERVE_MAX_BODY_MB; default: 6].",
)
@threads_option
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds SIGTERM waits for requests in flight.",
)
def serve(
    model_dir: str | None,
    bot: str | None,
    host: str,
    port: int | None,
    max_body_mb: float | None,
    threads: int,
    graceful_timeout: float,
) -> None:
    """Serve a bot in the SageMaker inference contract (GET /ping, POST /invocations)."""
    options = ServeOptions.from_env(
        model_dir=Path(model_dir) if model_dir else None,
        bot=bot,
        host=host,
        port=port,
        max_body_bytes=int(max_body_mb * 1024 * 1024) if max_body_mb else None,
        threads=threads,
        graceful_timeout=graceful_timeout,
    )
    sys.exit(serve_main(options))


if __name__ == "__main__":
    main()
