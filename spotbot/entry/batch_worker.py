"""The Batch worker (`spotbot work`): one shard of one job, from S3 through a bot to S3 and OpenSearch.

An AWS Batch array child starts it with the environment of `spotbot.core.envnames`; the shard is
SPOTBOT_SHARD_OFFSET + AWS_BATCH_JOB_ARRAY_INDEX. It opens the OpenSearch store, loads the
bot (in-container, with the job's model downloaded from the S3 registry) or wraps it in an
EndpointBot (endpoint mode), and runs a ShardWorker to the end of the shard.

Spot reclaim sends SIGTERM, then SIGKILL two minutes later. On SIGTERM the worker finishes
the batch in hand, hands the rest of its claimed page back (PENDING) and exits 143, so the
attempt counts as failed and Batch's `evaluateOnExit` (`Host EC2*` -> RETRY) starts the
shard again, where it left off. If the batch is not done within `stop_grace_seconds`, the
worker exits at once: results are single atomic S3 PUTs and task marks come after them, so
the tasks it leaves RUNNING are reclaimed and redone by the next attempt, to the same keys.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotbot.aws.endpoint_bot import EndpointBot
from spotbot.aws.locations import open_sink, open_source
from spotbot.aws.model_registry import S3ModelRegistry
from spotbot.aws.settings import CloudSettings, ConfigError
from spotbot.core import envnames
from spotbot.core.artifacts import MANIFEST, ModelRef
from spotbot.core.bot import Bot
from spotbot.core.errors import (
    ENVIRONMENT_EXIT_CODE,
    EnvironmentFault,
    SpotbotError,
    UsageError,
)
from spotbot.core.guards import JobGuard
from spotbot.core.records import Job
from spotbot.core.shard import job_bot_class, job_model, load_job_bot
from spotbot.core.sources import parse_s3_uri
from spotbot.core.store import TaskStore
from spotbot.core.worker import (
    DEFAULT_MAX_ASSET_BYTES,
    ShardStats,
    ShardWorker,
    WorkerConfig,
    available_cpus,
)
from spotbot.entry.jsonlog import configure_json_logging

log = logging.getLogger(__name__)

ENDPOINT, IN_CONTAINER = "endpoint", "in-container"
INFERENCE_MODES = (ENDPOINT, IN_CONTAINER)
MODEL_CACHE = "SPOTBOT_MODEL_CACHE"  # where downloaded models are kept (default: a temp dir)

# Exit codes. Batch retries on the host's loss whatever the code; a clean stop before the
# shard's end must still be non-zero, or the attempt would count as SUCCEEDED and the shard's
# remaining tasks would never be worked.
EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 128 + signal.SIGTERM


@dataclass(slots=True)
class WorkerParams:
    """What one worker run is about. Flags override the environment."""

    job_id: str
    shard: int
    bot: str | None = None  # a bot name or module:Class spec; default: the job's
    model_version: str | None = None  # checked against the job's
    inference: str = IN_CONTAINER
    endpoint_name: str | None = None
    attempt: int = 1
    batch_job_id: str | None = None
    model_cache: Path | None = None
    threads: int = 0  # 0: the cores this container may use
    stop_grace_seconds: float = 60.0
    config: WorkerConfig = field(default_factory=WorkerConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> WorkerParams:
        """Params from the environment (spotbot.core.envnames), flags (not None) taking precedence."""
        env = os.environ if env is None else env
        given = {k: v for k, v in flags.items() if v is not None}
        job_id = given.pop("job_id", None) or env.get(envnames.JOB_ID)
        if not job_id:
            raise ConfigError(f"no job id: set {envnames.JOB_ID} or pass --job-id")
        shard = given.pop("shard", None)
        if shard is None:
            shard = _int_env(env, envnames.SHARD_OFFSET, 0) + _int_env(
                env, envnames.AWS_BATCH_JOB_ARRAY_INDEX, 0
            )
        inference = given.pop("inference", None) or env.get(envnames.INFERENCE) or IN_CONTAINER
        if inference not in INFERENCE_MODES:
            raise ConfigError(f"inference must be one of {', '.join(INFERENCE_MODES)}")
        cache = given.pop("model_cache", None) or env.get(MODEL_CACHE)
        return cls(
            job_id=job_id,
            shard=int(shard),
            bot=given.pop("bot", None) or env.get(envnames.BOT) or None,
            model_version=given.pop("model_version", None) or env.get(envnames.MODEL_VERSION),
            inference=inference,
            endpoint_name=given.pop("endpoint_name", None) or env.get(envnames.ENDPOINT_NAME),
            attempt=_int_env(env, envnames.AWS_BATCH_JOB_ATTEMPT, 1),
            batch_job_id=env.get(envnames.AWS_BATCH_JOB_ID),
            model_cache=Path(cache) if cache else None,
            **given,
        )

    def log_context(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "bot": self.bot,
            "shard": self.shard,
            "attempt": self.attempt,
            "batch_job_id": self.batch_job_id,
        }


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


@dataclass(slots=True)
class WorkOutcome:
    stats: ShardStats | None
    exit_code: int
    reason: str


class StopSignals:
    """SIGTERM/SIGINT set the stop event; a watchdog ends the process if stopping takes too long.

    A second signal exits at once: the operator (or Batch) has run out of patience.
    Stopping late is safe at any point: see the module's docstring.
    """

    def __init__(self, stop: threading.Event, grace_seconds: float):
        self.stop = stop
        self.grace_seconds = grace_seconds
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only flags and a thread here: logging from a signal handler can interleave with a
        # record the main thread is writing.
        if self.stop.is_set():
            os._exit(EXIT_STOPPED)
        self.stop.set()
        threading.Thread(
            target=self._watchdog, args=(signum,), name="stop-watchdog", daemon=True
        ).start()

    def _watchdog(self, signum: int) -> None:
        log.warning(
            "stop signal: finishing the batch in hand, then handing the rest back",
            extra={"signal": signal.Signals(signum).name, "grace_seconds": self.grace_seconds},
        )
        time.sleep(self.grace_seconds)
        # Still here: the batch in hand is too slow. Leaving its tasks RUNNING is safe (the
        # next attempt reclaims them); being SIGKILLed halfway through nothing is no safer.
        log.error("the batch in hand did not finish in time: exiting without it")
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_STOPPED)


def model_cache_dir(params: WorkerParams) -> Path:
    return params.model_cache or Path(tempfile.gettempdir()) / "spotbot-models"


def fetch_model(job: Job, cache: Path, registry_client: Any = None) -> ModelRef:
    """The job's model, downloaded from the S3 registry into `cache` when it is not built in.

    The registry location comes from the job (options["model_origin"], the version's URI),
    not from the deployment, so a worker always loads exactly the model the job resolved.
    """
    origin = job.opts.model_origin
    version = job.model_version or ""
    if not origin.startswith("s3://"):
        return job_model(job)
    bucket, key = parse_s3_uri(origin)
    suffix = f"{job.bot}/{version}/"
    key = key if key.endswith("/") else key + "/"
    if not key.endswith(suffix):
        raise ConfigError(f"the job's model origin {origin} is not <registry>/{suffix}")
    target = cache / job.bot / version
    if not (target / MANIFEST).is_file():
        # Download beside the target and rename: a worker killed mid-download leaves a
        # staging folder, never a model folder that looks complete.
        staging = cache / ".staging" / f"{job.bot}-{version}-{uuid.uuid4().hex[:8]}"
        registry = S3ModelRegistry(bucket, key[: -len(suffix)], client=registry_client)
        began = time.perf_counter()
        registry.download(job.bot, version, staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
        log.info(
            "model downloaded",
            extra={"model_origin": origin, "seconds": round(time.perf_counter() - began, 2)},
        )
    return job_model(job, target)


def build_bot(
    job: Job, params: WorkerParams, runtime_client: Any = None, s3_client: Any = None
) -> Bot:
    """The bot that tags this job's assets: loaded here, or an EndpointBot in front of the endpoint."""
    override = params.bot if params.bot and ":" in params.bot else None
    bot_cls = job_bot_class(job, override)
    if params.inference == ENDPOINT:
        name = params.endpoint_name or job.opts.endpoint_name
        if not name:
            raise ConfigError(f"endpoint mode needs {envnames.ENDPOINT_NAME} or --endpoint-name")
        bot: Bot = EndpointBot(bot_cls(), name, client=runtime_client)
        bot.load(ModelRef(job.bot, job.model_version or "", None, f"endpoint {name}"))
        return bot
    ref = fetch_model(job, model_cache_dir(params), registry_client=s3_client)
    threads = params.threads or available_cpus()
    bot, seconds = load_job_bot(job, threads, override, model=ref)
    log.info(
        "model loaded",
        extra={"model_version": ref.version, "threads": threads, "seconds": round(seconds, 2)},
    )
    return bot


def run_worker(
    params: WorkerParams,
    *,
    settings: CloudSettings | None = None,
    store: TaskStore | None = None,
    stop: threading.Event | None = None,
    runtime_client: Any = None,
    s3_client: Any = None,
    on_batch: Callable[[ShardStats], None] | None = None,
) -> WorkOutcome:
    """Work the shard to its end (exit 0) or until `stop` (exit 143). Errors propagate."""
    stop = stop or threading.Event()
    own_store = store is None
    if store is None:
        settings = settings or CloudSettings.from_env(required=(envnames.OPENSEARCH_ENDPOINT,))
        store = settings.open_store()
    try:
        job = store.get_job(params.job_id)
        params.bot = params.bot or job.bot
        if job.status.is_final:
            log.info("job already finished: nothing to do", extra={"status": str(job.status)})
            return WorkOutcome(None, EXIT_DONE, f"job is {job.status}")
        if job.cancel_requested:  # e.g. cancelled while the machine waited for the endpoint
            log.info("job was cancelled: nothing to do")
            return WorkOutcome(None, EXIT_DONE, "job was cancelled")
        if job.options.get("abort_reason"):  # another worker stopped the job (failures, budget)
            log.info(
                "job stopped early: nothing to do", extra={"reason": job.options["abort_reason"]}
            )
            return WorkOutcome(None, EXIT_DONE, str(job.options["abort_reason"]))
        if not 0 <= params.shard < job.shards:
            raise UsageError(f"shard {params.shard} is outside the job's 0..{job.shards - 1}")
        if params.model_version and job.model_version and params.model_version != job.model_version:
            raise UsageError(
                f"job {job.id} uses model {job.model_version}, not {params.model_version}"
            )
        bot = build_bot(job, params, runtime_client=runtime_client, s3_client=s3_client)
        config = params.config
        if job.opts.max_asset_bytes and config.max_asset_bytes == DEFAULT_MAX_ASSET_BYTES:
            config.max_asset_bytes = job.opts.max_asset_bytes
        source_kwargs = {"concurrency": config.read_concurrency}
        source = open_source(
            job.source, **(source_kwargs if job.source.startswith("s3://") else {})
        )
        guard = JobGuard(
            store,
            job.id,
            claim_size=config.page_size,
            # A Batch child's id is unique (a retry run of the job is a new array): its time
            # never overwrites an earlier run's of the same shard.
            account=(
                f"{params.batch_job_id or params.shard}-{params.attempt}",
                params.threads or available_cpus(),
            ),
        )
        worker = ShardWorker(
            store=store,
            source=source,
            sink=open_sink(job.output),
            bot=bot,
            job=job,
            shard=params.shard,
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{params.shard}:{params.attempt}",
            config=config,
            stop=stop,
            on_batch=_guarded(on_batch or _progress_logger(), guard, stop),
        )
        log.info("shard started", extra={"inference": params.inference, "source": job.source})
        stats = worker.run()
        guard.record_time(force=True)
    finally:
        if own_store:
            store.close()
    log.info("shard stopped" if stats.stopped else "shard finished", extra=stats.to_dict())
    if guard.reason is not None:
        # Not a signal: the job stops early (failures, budget); finalize says so. Exit 0, so
        # Batch does not retry the child.
        return WorkOutcome(stats, EXIT_DONE, guard.reason)
    if stats.stopped:
        return WorkOutcome(stats, EXIT_STOPPED, "stopped by a signal before the shard's end")
    return WorkOutcome(stats, EXIT_DONE, "shard finished")


def _guarded(
    on_batch: Callable[[ShardStats], None], guard: JobGuard, stop: threading.Event
) -> Callable[[ShardStats], None]:
    """After each batch: report, then stop claiming if the job must stop early."""

    def check(stats: ShardStats) -> None:
        on_batch(stats)
        if guard(stats):
            log.warning("stopping early", extra={"reason": guard.reason})
            stop.set()

    return check


def _progress_logger(every_seconds: float = 30.0) -> Callable[[ShardStats], None]:
    last = time.monotonic()

    def on_batch(stats: ShardStats) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every_seconds:
            last = now
            log.info("progress", extra={"done": stats.done, "failed": stats.failed})

    return on_batch


class _ContextFilter(logging.Filter):
    """Puts job id, bot, shard and attempt on every record (read live: the bot is known late)."""

    def __init__(self, params: WorkerParams):
        super().__init__()
        self.params = params

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.params.log_context().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def main(params: WorkerParams) -> int:
    """The `work` entry point: JSON logs, signals, and an exit code Batch can act on."""
    level = logging.getLevelName((os.environ.get(envnames.LOG_LEVEL) or "INFO").upper())
    handler = configure_json_logging(level=level if isinstance(level, int) else logging.INFO)
    handler.addFilter(_ContextFilter(params))
    stop = threading.Event()
    try:
        with StopSignals(stop, params.stop_grace_seconds):
            outcome = run_worker(params, stop=stop)
    except (UsageError, ConfigError) as exc:
        log.error("cannot work this shard: %s", exc, extra={"error": type(exc).__name__})
        return EXIT_USAGE
    except EnvironmentFault as exc:
        # S3 or the index failed past their retries: not the shard's fault. The job
        # definition retries this exit code; the next attempt resumes where this one stopped.
        log.error("stopped by the environment: %s", exc, extra={"error": type(exc).__name__})
        return ENVIRONMENT_EXIT_CODE
    except SpotbotError as exc:
        log.error("worker failed: %s", exc, extra={"error": type(exc).__name__})
        return EXIT_FAILED
    except Exception:
        log.exception("worker crashed")
        return EXIT_FAILED
    return outcome.exit_code
