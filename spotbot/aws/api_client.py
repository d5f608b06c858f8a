"""A client of spotbot's REST API: requests signed with SigV4 (botocore's signer), the way API
Gateway's IAM authorisation wants them, and the API's JSON errors as spotbot's own."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import requests

from spotbot.core.errors import CloudServiceError, JobNotFoundError, UsageError

#: The API's error codes that are the caller's mistake (functions/api.py ERROR_STATUS).
_CALLER_STATUSES = range(400, 500)


class ApiClient:
    """GET/POST/PUT/DELETE on the API at `base_url`, signed for `execute-api` in `region`."""

    def __init__(
        self,
        base_url: str,
        region: str | None = None,
        session: Any = None,
        timeout: float = 30.0,
    ):
        import boto3

        self.base_url = base_url.rstrip("/")
        self._session = session or boto3.Session()
        self.region = region or self._session.region_name or _region_of(self.base_url)
        self.timeout = timeout
        self._http = requests.Session()

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """The decoded JSON answer; UsageError (4xx) or CloudServiceError (5xx) with the API's
        own one-line detail otherwise."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        params = {k: v for k, v in query.items() if v is not None}
        url = self.base_url + path + (f"?{urlencode(params)}" if params else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        credentials = self._session.get_credentials()
        if credentials is None:
            raise UsageError("no AWS credentials to sign requests to the spotbot API")
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(
            request
        )
        try:
            answer = self._http.request(
                method, url, data=data, headers=dict(request.headers), timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise CloudServiceError(
                f"cannot reach the spotbot API at {self.base_url}: {exc}"
            ) from exc
        try:
            payload = answer.json() if answer.content else None
        except ValueError:
            payload = None
        if answer.status_code < 400:
            return payload
        detail = payload.get("detail") if isinstance(payload, dict) else answer.text[:200]
        error = payload.get("error") if isinstance(payload, dict) else answer.reason
        if isinstance(detail, list):  # validation errors: where and what, one line
            detail = "; ".join(
                f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail
            )
        message = f"{error}: {detail}"
        if answer.status_code == 404 and error == "job_not_found":
            raise JobNotFoundError(str(detail))
        if answer.status_code in _CALLER_STATUSES:
            raise UsageError(message)
        raise CloudServiceError(f"the spotbot API answered {answer.status_code}: {message}")


def _region_of(url: str) -> str:
    """us-east-1 from https://abc.execute-api.us-east-1.amazonaws.com/v1."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    if "execute-api" in parts and parts.index("execute-api") + 1 < len(parts):
        return parts[parts.index("execute-api") + 1]
    return "us-east-1"
