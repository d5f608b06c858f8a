"""`spotbot serve`: a bot in the SageMaker inference contract, on Starlette + uvicorn.

    GET  /ping                 200 once the model is loaded (cheap: no inference)
    POST /invocations          one asset's raw bytes in the bot's media types -> its prediction;
                               application/json {"instances": [{"key", "b64"}, ...]} ->
                               {"predictions": [prediction | {"error"}, ...]} (spotbot.aws.endpoint_bot)
    GET  /execution-parameters what SageMaker Batch Transform asks before sending work

Errors are JSON {"error", "detail"}: 415 for a content type the bot does not take, 400 for a
payload it cannot decode (the bot's own AssetError message) or malformed JSON, 413 for a body
over the limit, 406 when the client accepts no JSON. The model comes from /opt/ml/model (a
folder with bot.json, as SageMaker unpacks model.tar.gz); with none there, the bot named by
SPOTBOT_BOT serves its built-in model. The model is loaded before the port opens, so a model
that cannot load fails the container at start, where SageMaker reports it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import mimetypes
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spotbot.aws.endpoint_bot import JSON_CONTENT_TYPE
from spotbot.core import envnames
from spotbot.core.artifacts import MANIFEST, ModelManifest, ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import AssetError, ModelError, SpotbotError, UsageError, one_line
from spotbot.core.opt_ml import opt_ml
from spotbot.core.parts import PartStream, container_extensions
from spotbot.core.plugins import load_bot_class
from spotbot.core.worker import available_cpus, decode_asset, error_text, predict_isolated
from spotbot.entry.jsonlog import JsonFormatter, configure_json_logging

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
# SageMaker real-time endpoints take at most 6 MB per request; a local server may allow more.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_BODY_ENV = "SPOTBOT_SERVE_MAX_BODY_MB"
_RAW_TYPES = {"application/octet-stream"}  # raw bytes of one asset, whatever the bot's media


@dataclass(slots=True)
class ServeOptions:
    model_dir: Path
    bot: str | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    threads: int = 0
    graceful_timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> ServeOptions:
        """Flags (not None) first, then SM_MODEL_DIR / SPOTBOT_OPT_ML, SAGEMAKER_BIND_TO_PORT..."""
        env = os.environ if environ is None else environ
        given = {k: v for k, v in flags.items() if v is not None}
        model_dir = given.pop("model_dir", None) or Path(
            env.get("SM_MODEL_DIR") or opt_ml(env) / "model"
        )
        port = given.pop("port", None) or int(env.get("SAGEMAKER_BIND_TO_PORT") or DEFAULT_PORT)
        max_body = given.pop("max_body_bytes", None)
        if max_body is None:
            mb = env.get(MAX_BODY_ENV)
            max_body = int(float(mb) * 1024 * 1024) if mb else DEFAULT_MAX_BODY_BYTES
        return cls(
            model_dir=Path(model_dir),
            bot=given.pop("bot", None) or env.get(envnames.BOT) or None,
            port=port,
            max_body_bytes=max_body,
            **given,
        )


# -- the model ------------------------------------------------------------------------------
def find_model(model_dir: Path) -> Path | None:
    """The folder holding bot.json under `model_dir`, or None when there is no model at all.

    A model.tar.gz made from a folder unpacks to model_dir/<folder>/bot.json: accepted too.
    """
    if not model_dir.is_dir():
        return None
    if (model_dir / MANIFEST).is_file():
        return model_dir
    entries = [p for p in model_dir.iterdir() if not p.name.startswith(".")]
    if not entries:
        return None
    if len(entries) == 1 and (entries[0] / MANIFEST).is_file():
        return entries[0]
    raise ModelError(f"{model_dir}: not a model directory (no {MANIFEST})")


def load_served_bot(model_dir: Path, spec: str | None, threads: int = 0) -> Bot:
    """The bot to serve, loaded: the model in `model_dir`, else `spec`'s built-in model."""
    path = find_model(model_dir)
    threads = threads or available_cpus()
    if path is not None:
        manifest = ModelManifest.read(path)
        bot = load_bot_class(spec or manifest.bot)()
        bot.load(ModelRef(bot.name, manifest.version, path, f"folder {path}"), threads=threads)
        return bot
    if not spec:
        raise UsageError(f"no model in {model_dir} and no bot named ({envnames.BOT} or --bot)")
    return load_builtin_bot(spec, threads, where=f"no model in {model_dir}, and ")


def load_builtin_bot(spec: str, threads: int = 0, where: str = "") -> Bot:
    """The bot named by `spec`, loaded with its built-in model (ModelError if it has none)."""
    cls = load_bot_class(spec)
    if not cls.builtin_version:
        raise ModelError(f"{where}bot {cls.name!r} has no built-in model")
    bot = cls()
    bot.load(
        ModelRef(cls.name, cls.builtin_version, None, cls.builtin_origin),
        threads=threads or available_cpus(),
    )
    return bot


def media_types(bot: Bot) -> frozenset[str]:
    """The content types of one raw asset this bot takes, from its extensions and media."""
    types = set(_RAW_TYPES)
    for ext in bot.extensions | container_extensions(bot.containers):
        guessed, _ = mimetypes.guess_type(f"x.{ext}", strict=False)
        if guessed:
            types.add(guessed)
    if bot.media == "image":
        types.add("application/x-image")  # the SageMaker SDK's image content type
    if bot.media == "text":
        types.add("text/plain")
    return frozenset(types)


# -- tagging --------------------------------------------------------------------------------
class BadRequest(Exception):
    def __init__(self, status: int, error: str, detail: str = ""):
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


class Tagger:
    """Decode and predict for requests; predict is serialised (models need not be thread-safe)."""

    def __init__(self, bot: Bot):
        self.bot = bot
        self._lock = threading.Lock()

    def tag_one(self, data: bytes, content_type: str) -> Prediction:
        if not data:
            raise BadRequest(400, "empty body", "send the bytes of one asset")
        ext = mimetypes.guess_extension(content_type, strict=False) or ""
        try:  # a decoder bug on odd bytes is still the payload's 400
            decoded = self._decode(data, f"invocation{ext}")
        except AssetError as exc:
            raise BadRequest(400, "cannot decode the payload", one_line(exc)) from None
        try:
            if isinstance(decoded, PartStream):  # a PDF, a multi-page TIFF, a video
                return decoded.tag()
            return self._locked_predict([decoded])[0]
        except AssetError as exc:
            raise BadRequest(400, "cannot tag the asset", one_line(exc)) from None
        except Exception as exc:
            log.exception("the bot failed on a request")
            raise BadRequest(500, "bot error", error_text(exc)) from None

    def tag_batch(self, body: bytes) -> list[Prediction | dict[str, str]]:
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(400, "malformed JSON", one_line(exc)) from None
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list):
            raise BadRequest(
                400, "malformed batch", 'expected {"instances": [{"key": ..., "b64": ...}, ...]}'
            )
        entries: list[Prediction | str] = []
        ready: list[tuple[int, Any]] = []
        for index, instance in enumerate(instances):
            try:
                ready.append((index, self._decode_instance(index, instance)))
                entries.append("")
            except AssetError as exc:
                entries.append(one_line(exc))
        for (index, _), result in zip(
            ready, predict_isolated(self._locked_predict, [d for _, d in ready]), strict=True
        ):
            entries[index] = result
        return [{"error": e} if isinstance(e, str) else e for e in entries]

    def _decode_instance(self, index: int, instance: Any) -> Any:
        if not isinstance(instance, dict) or not isinstance(instance.get("b64"), str):
            raise AssetError('an instance must be {"key": ..., "b64": <base64 of the bytes>}')
        key = str(instance.get("key") or f"instance-{index}")
        try:
            data = base64.b64decode(instance["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise AssetError("invalid base64 in b64") from None
        if not data:
            raise AssetError("empty file (0 bytes)")
        return self._decode(data, key)  # a decoder's bug fails one item only

    def _decode(self, data: bytes, key: str) -> Any:
        decoded = decode_asset(self.bot, data, key)
        if isinstance(decoded, PartStream):
            decoded.tagger = self._locked_tag_container  # page by page, under the model's lock
        return decoded

    def _locked_predict(self, decoded: Sequence[Any]) -> Sequence[Prediction]:
        with self._lock:
            return self.bot.predict(decoded)

    def _locked_tag_container(self, stream: PartStream) -> Prediction:
        with self._lock:
            return self.bot.tag_container(stream)


# -- HTTP -----------------------------------------------------------------------------------
def create_app(bot: Bot, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """The Starlette app for a loaded bot."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    tagger = Tagger(bot)
    raw_types = media_types(bot)
    accepted = sorted(raw_types | {JSON_CONTENT_TYPE})

    def error(status: int, message: str, detail: str = "") -> JSONResponse:
        return JSONResponse({"error": message, "detail": detail}, status_code=status)

    async def ping(request: Request) -> Response:
        return JSONResponse({"status": "ok", "bot": bot.name, "model_version": _version(bot)})

    async def execution_parameters(request: Request) -> Response:
        return JSONResponse(
            {
                "MaxConcurrentTransforms": 1,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": max(1, max_body_bytes // (1024 * 1024)),
            }
        )

    async def invocations(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in raw_types and content_type != JSON_CONTENT_TYPE:
            return error(
                415,
                f"unsupported content type {content_type or '(none)'!r}",
                f"{bot.name} takes: {', '.join(accepted)}",
            )
        if not _accepts_json(request.headers.get("accept", "")):
            return error(406, "this server answers application/json only")
        try:
            body = await _read_body(request, max_body_bytes)
            if content_type == JSON_CONTENT_TYPE:
                predictions = await run_in_threadpool(tagger.tag_batch, body)
                return JSONResponse({"predictions": predictions})
            return JSONResponse(await run_in_threadpool(tagger.tag_one, body, content_type))
        except BadRequest as exc:
            log.info("rejected a request: %s (%s)", exc.error, exc.detail)
            return error(exc.status, exc.error, exc.detail)

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/execution-parameters", execution_parameters, methods=["GET"]),
        ]
    )


def _version(bot: Bot) -> str | None:
    return bot.model.version if bot.model else None


def _accepts_json(accept: str) -> bool:
    if not accept.strip():
        return True
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {JSON_CONTENT_TYPE, "application/*", "*/*"})


async def _read_body(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(
            413, "request body too large", f"{int(declared):,} bytes is over {limit:,}"
        )
    chunks, size = [], 0
    async for chunk in request.stream():  # a chunked body has no length: count as it comes
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "request body too large", f"over {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# -- the process ----------------------------------------------------------------------------
def main(options: ServeOptions) -> int:
    """Load the model, then serve until SIGTERM; in-flight requests finish before the exit."""
    import uvicorn

    context: dict[str, Any] = {"service": "serve", "bot": options.bot}
    handler = configure_json_logging(context)
    try:
        bot = load_served_bot(options.model_dir, options.bot, options.threads)
    except SpotbotError as exc:
        log.error("cannot load the model: %s", exc, extra={"model_dir": str(options.model_dir)})
        return 1
    if isinstance(handler.formatter, JsonFormatter):  # the bot's own name from here on
        handler.formatter.context.update(bot=bot.name, model_version=_version(bot))
    log.info("model loaded", extra={"model_dir": str(options.model_dir), "port": options.port})
    config = uvicorn.Config(
        create_app(bot, options.max_body_bytes),
        host=options.host,
        port=options.port,
        log_config=None,  # keep the JSON handler on the root logger
        access_log=False,  # SageMaker pings every few seconds; its metrics count requests
        timeout_graceful_shutdown=max(1, round(options.graceful_timeout)),
        lifespan="off",
    )
    server = uvicorn.Server(config)
    stopped: list[int] = []
    # uvicorn re-raises the stop signal after its graceful shutdown; with these handlers in
    # place that is a no-op, so a requested stop ends the process with exit code 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopped.append(signum))
    server.run()
    if not server.started:
        return 1
    log.info("stopped", extra={"signals": stopped})
    return 0
