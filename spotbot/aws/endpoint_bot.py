"""EndpointBot: a bot whose predict runs on a SageMaker endpoint, and the JSON batch wire format.

The wire format is the one `spotbot serve` answers on `POST /invocations`:

    request   Content-Type: application/json
              {"instances": [{"key": "a/b.jpg", "b64": "<base64 of the asset's bytes>"}, ...]}
    response  {"predictions": [<prediction> | {"error": "<one line>"}, ...]}

one entry per instance, in order. A prediction always carries "tags" (the Bot contract); an
entry with "error" and no "tags" is a per-asset failure.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction
from spotbot.core.errors import AssetError, BotUnavailableError, one_line

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
# SageMaker real-time InvokeEndpoint refuses bodies over 6 MB; keep a margin for the JSON.
SAGEMAKER_MAX_REQUEST_BYTES = 6 * 1000 * 1000
_INSTANCE_OVERHEAD = 32  # {"key": , "b64": } and separators


@dataclass(slots=True, frozen=True)
class EncodedAsset:
    """An asset checked locally and ready to send: its key and its raw bytes."""

    key: str
    data: bytes

    def request_size(self) -> int:
        """Bytes this asset adds to a JSON batch request."""
        return 4 * ((len(self.data) + 2) // 3) + len(json.dumps(self.key)) + _INSTANCE_OVERHEAD


def encode_batch(assets: Sequence[EncodedAsset]) -> bytes:
    instances = [{"key": a.key, "b64": base64.b64encode(a.data).decode("ascii")} for a in assets]
    return json.dumps({"instances": instances}, ensure_ascii=False).encode()


def parse_predictions(body: bytes, expected: int) -> list[Prediction | str]:
    """The entries of a batch response: a Prediction, or the error message for that asset.

    ValueError when the body is not a batch response of `expected` entries.
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the response is not JSON: {exc}") from None
    predictions = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(predictions, list) or len(predictions) != expected:
        got = len(predictions) if isinstance(predictions, list) else "no"
        raise ValueError(f'expected {{"predictions": [...]}} with {expected} entries, got {got}')
    out: list[Prediction | str] = []
    for entry in predictions:
        if not isinstance(entry, dict):
            raise ValueError(f"a prediction is not an object: {one_line(entry, 80)}")
        if "tags" in entry:
            out.append(entry)
        elif "error" in entry:
            out.append(one_line(entry["error"]) or "failed at the endpoint")
        else:
            raise ValueError("a prediction has neither tags nor error")
    return out


class EndpointBot(Bot):
    """Decodes locally (so a bad asset fails its own task, cheaply) and predicts remotely.

    The wrapped bot is never loaded: decode needs no model (true of every built-in bot), and
    the model lives in the endpoint. Batches are split so no request exceeds SageMaker's
    payload limit; an asset too large for any request fails at decode.
    """

    name = "endpoint"
    media: ClassVar[str] = "file"
    extensions: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        local: Bot,
        endpoint_name: str,
        client: Any = None,
        max_request_bytes: int = SAGEMAKER_MAX_REQUEST_BYTES,
    ):
        super().__init__()
        self.local = local
        self.endpoint_name = endpoint_name
        self.max_request_bytes = max_request_bytes
        self._client = client
        # Take the wrapped bot's identity (name, batch size...) so the worker and its logs see
        # the real bot; instance attributes shadow the class defaults above.
        vars(self).update(
            name=local.name,
            media=local.media,
            extensions=local.extensions,
            batch_size=local.batch_size,
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Endpoints answer within 60 s or SageMaker fails the call; standard retries cover
            # throttling and the endpoint's transient 5xx.
            self._client = boto3.client(
                "sagemaker-runtime",
                config=Config(
                    connect_timeout=10,
                    read_timeout=75,
                    retries={"max_attempts": 5, "mode": "standard"},
                ),
            )
        return self._client

    def _load(self, model: ModelRef, threads: int) -> None:
        """Nothing to load here: the endpoint holds the model."""

    def decode(self, data: bytes, key: str) -> EncodedAsset:
        self.local.decode(data, key)  # validation only: AssetError for a bad asset
        asset = EncodedAsset(key, data)
        if asset.request_size() + 32 > self.max_request_bytes:
            raise AssetError(
                f"asset too large for the endpoint: {len(data) / 1e6:.1f} MB is over what one"
                f" request can carry ({self.max_request_bytes / 1e6:.1f} MB, base64-encoded)"
            )
        return asset

    def predict(self, items: Sequence[EncodedAsset]) -> list[Prediction]:
        entries: list[Prediction | str] = []
        for chunk in self._chunks(items):
            entries.extend(self._invoke(chunk))
        errors = [(a.key, e) for a, e in zip(items, entries, strict=True) if isinstance(e, str)]
        if errors:
            if len(items) == 1:
                raise AssetError(errors[0][1])
            # The worker then sends the batch one by one, so only the culprits fail.
            raise AssetError(f"{len(errors)} of {len(items)} assets failed at the endpoint")
        return [e for e in entries if not isinstance(e, str)]

    def _chunks(self, items: Sequence[EncodedAsset]) -> list[list[EncodedAsset]]:
        chunks: list[list[EncodedAsset]] = []
        size = 0
        for item in items:
            cost = item.request_size()
            if chunks and size + cost + 32 <= self.max_request_bytes:
                chunks[-1].append(item)
                size += cost
            else:
                chunks.append([item])
                size = cost
        return chunks

    def _invoke(self, chunk: Sequence[EncodedAsset]) -> list[Prediction | str]:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"endpoint {self.endpoint_name}"
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType=JSON_CONTENT_TYPE,
                Accept=JSON_CONTENT_TYPE,
                Body=encode_batch(chunk),
            )
            body = response["Body"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Error")
            status = int(exc.response.get("OriginalStatusCode") or 0)
            message = exc.response.get("OriginalMessage") or error.get("Message") or str(exc)
            if code == "ModelError" and 400 <= status < 500:
                # The container refused this request (our payload): fail it, not the worker.
                if len(chunk) == 1:
                    raise AssetError(one_line(f"{where} refused the asset: {message}")) from None
                raise RuntimeError(
                    one_line(f"{where} refused a batch ({status}): {message}")
                ) from None
            raise BotUnavailableError(one_line(f"{where} failed: {code}: {message}")) from exc
        except BotoCoreError as exc:
            raise BotUnavailableError(one_line(f"{where} cannot be reached: {exc}")) from exc
        try:
            return parse_predictions(body, len(chunk))
        except ValueError as exc:
            # Not our protocol: a wrong image behind the endpoint. Stop rather than fail assets.
            raise BotUnavailableError(f"{where} answered in an unknown format: {exc}") from None
