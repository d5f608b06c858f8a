"""A busy or briefly unavailable index is retried with backoff, never failed at once.

A proxy in front of the OpenSearch stand-in answers as a throttled cluster would (429, then
503) before letting requests through."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest
from opensearchpy.exceptions import TransportError

from spotbot.aws.opensearch_store import OpenSearchTaskStore
from spotbot.core.records import Job

pytestmark = pytest.mark.integration


class Throttle:
    """Answers the next `refuse` requests with these statuses, then proxies to `upstream`."""

    def __init__(self, upstream: str):
        self.upstream = urlparse(upstream)
        self.statuses: list[int] = []
        self.refused = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        throttle = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if throttle.statuses:
                    status = throttle.statuses.pop(0)
                    throttle.refused += 1
                    payload = b'{"error": "too_many_requests", "status": %d}' % status
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(
                    throttle.upstream.hostname, throttle.upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler


@pytest.fixture
def throttle(osmem_clone: Any) -> Iterator[Throttle]:
    proxy = Throttle(osmem_clone.url)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.server.shutdown()


def test_throttling_and_unavailability_are_retried_with_backoff(throttle: Throttle) -> None:
    # GIVEN a store whose cluster answers 429, 429, 503 to the next three requests
    store = OpenSearchTaskStore(throttle.url)
    transport = store._client.transport
    transport.base_delay = 0.01
    throttle.statuses = [429, 429, 503]
    # WHEN a job is written and read back THEN both succeed, after three retries
    store.create_job(Job(id="job-busy", bot="words", source="s", output="o"))
    assert store.get_job("job-busy").bot == "words"
    assert throttle.refused == 3 and transport.retries == 3


def test_a_cluster_that_stays_unavailable_is_an_error_after_the_retries(
    throttle: Throttle,
) -> None:
    store = OpenSearchTaskStore(throttle.url)
    store._client.transport.base_delay = 0.01
    throttle.statuses = [503] * 50
    with pytest.raises(TransportError):
        store._client.info()
    assert throttle.refused == store._client.transport.attempts
