"""The API's Lambda handler behind WSGI: each request becomes an API Gateway REST (v1) proxy
event, as the deployed API would hand it over (for schemathesis and a real local server)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from tests.functions.conftest import EVENTS


class ApiGatewayWsgi:
    """A WSGI app that hands each request to the handler as an API Gateway REST (v1) event."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]], context: Any):
        self.handler, self.context = handler, context
        self.template = json.loads((EVENTS / "api_rest_v1.json").read_text())

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        # wsgiref-style servers invent a text/plain type for a bodyless request: only a
        # type the client sent is the client's.
        if environ.get("CONTENT_TYPE") and body:
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = {
            k: v[-1]
            for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()
        }
        path = environ.get("PATH_INFO") or "/"
        event = copy.deepcopy(self.template)
        text: str | None
        try:
            text, encoded = (body.decode("utf-8"), False) if body else (None, False)
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        event.update(
            path=path,
            httpMethod=environ["REQUEST_METHOD"],
            resource=path,
            body=text,
            isBase64Encoded=encoded,
            headers=headers,
            multiValueHeaders={k: [v] for k, v in headers.items()},
            queryStringParameters=query or None,
            multiValueQueryStringParameters={k: [v] for k, v in query.items()} or None,
        )
        event["requestContext"].update(httpMethod=environ["REQUEST_METHOD"], resourcePath=path)
        response = self.handler(event, self.context)
        status = int(response["statusCode"])
        out_headers = [(k, str(v)) for k, v in (response.get("headers") or {}).items()]
        for key, values in (response.get("multiValueHeaders") or {}).items():
            out_headers += [(key, str(v)) for v in values]
        start(f"{status} {'OK' if status < 400 else 'Error'}", out_headers)
        return [(response.get("body") or "").encode()]
