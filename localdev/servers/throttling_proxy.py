"""A local HTTP proxy in front of a Cloud Storage JSON API server (fake-gcs-server) that answers the
first object copies with errors, as a bucket over its request rate does (429) or a server having a
bad moment (503), then forwards everything.

Only copies (`.../copyTo/...`, `.../rewriteTo/...`) are refused, each refusal with the body of the
real API's error; every other request, and every copy once the refusals are used up, goes to the
server unchanged. Tests point STORAGE_EMULATOR_HOST at it to see Backstop back off and finish.

It can also answer like the real service rather than a local emulator: `latency` seconds added to
every request (Google's JSON API takes tens of milliseconds per copy, the local server well under
one), so that the parallelism of the client, not the emulator's CPU, bounds the throughput; and it
records when each copy went through (`copies`: (monotonic time, destination bucket)), so a test can
count the writes a bucket took per second, and every request it served (`requests`: method and
path), so a test can count the round trips a step takes. And it can rot bytes: the downloads of the objects named
in `rotten` come back with their first byte flipped while their metadata (size, crc32c in a
listing) stays what was stored, as silent corruption under the service's checksum looks to a reader.

A batch request (`/batch/storage/v1`) is taken apart: each of its requests is refused, delayed,
recorded and forwarded as if sent alone, and the answers go back as one batch response (or, with
`no_batches`, it is answered 404, as by a server without the batch endpoint).

Use: `with throttling_proxy("http://127.0.0.1:4443", [429, 429, 503]) as proxy: ... proxy.url`.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import server as http_server
from typing import Any
from urllib.parse import unquote, urlsplit

from localdev.servers import gcs_batch as batch
from localdev.servers.listening import Server, answer

MESSAGES = {
    429: ("rateLimitExceeded", "The rate of change requests to the object is too high; please slow down."),
    503: ("backendError", "We encountered an internal error. Please try again."),
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}


@dataclass
class ProxyState:
    """What the proxy still refuses, and what it refused (status and path, in order)."""

    url: str = ""
    refusals: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    latency: float = 0.0
    copies: list[tuple[float, str]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request served
    rotten: set[str] = field(default_factory=set)  # object names whose downloads get a byte flipped
    batches: list[int] = field(default_factory=list)  # the requests each batch request held
    no_batches: bool = False  # answer batch requests 404, as a server without the batch endpoint
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rots(self, method: str, path: str) -> bool:
        """Whether this request downloads (`alt=media`) an object named in `rotten`."""
        parts = urlsplit(path)
        if method != "GET" or "alt=media" not in parts.query or "/o/" not in parts.path:
            return False
        return unquote(parts.path.rsplit("/o/", 1)[1]) in self.rotten

    def forwarded(self, method: str, path: str) -> None:
        """Record a copy that goes through to the server (when, into which bucket)."""
        if method == "POST" and ("/copyTo/" in path or "/rewriteTo/" in path):
            bucket = path.split("/copyTo/b/" if "/copyTo/" in path else "/rewriteTo/b/", 1)[1].split("/", 1)[
                0
            ]
            with self.lock:
                self.copies.append((time.monotonic(), bucket))

    def refusal(self, method: str, path: str) -> int | None:
        if method != "POST" or not ("/copyTo/" in path or "/rewriteTo/" in path):
            return None
        with self.lock:
            if not self.refusals:
                return None
            status = self.refusals.pop(0)
            self.refused.append((status, path))
            return status


def _handler(upstream: str, state: ProxyState) -> type[http_server.BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(http_server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
        upstream_conn: http.client.HTTPConnection | None = None

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command == "POST" and urlsplit(self.path).path == batch.PATH:
                self._batch(body)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            self._answer(*self._one(self.command, self.path, headers, body))

        def _batch(self, body: bytes) -> None:
            """A batch: each of its requests refused, delayed, recorded and forwarded as if sent
            alone (one after the other: how far Google runs a batch's requests at once is not
            documented, so a batch gains no latency over the same requests on one connection)."""
            if state.no_batches:
                with state.lock:
                    state.batches.append(0)
                self._answer(404, {"Content-Type": "text/plain"}, b"Not Found")
                return
            found = batch.requests_of(self.headers.get("Content-Type", ""), dict(self.headers.items()), body)
            if isinstance(found, str):
                self._answer(400, {"Content-Type": "text/plain"}, found.encode())
                return
            with state.lock:
                state.batches.append(len(found))
            replies = []
            for content_id, method, path, headers, data in found:
                kept = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                status, answer_headers, answer = self._one(method, path, kept, data)
                replies.append((content_id, batch.reply(status, answer_headers, answer)))
            content_type, data = batch.answer(replies)
            self._answer(200, {"Content-Type": content_type}, data)

        def _one(
            self, method: str, path: str, headers: dict[str, str], body: bytes
        ) -> tuple[int, dict[str, str], bytes]:
            """One request: refused, or delayed, recorded and forwarded; (status, headers, body)."""
            status = state.refusal(method, path)
            if status is not None:
                reason, message = MESSAGES.get(status, ("error", "error"))
                error = {
                    "code": status,
                    "message": message,
                    "errors": [{"reason": reason, "message": message}],
                }
                return status, {"Content-Type": "application/json"}, json.dumps({"error": error}).encode()
            if state.latency:
                time.sleep(state.latency)
            with state.lock:
                state.requests.append((method, path))
            state.forwarded(method, path)
            for attempt in (1, 2):  # a kept-alive upstream connection may have been closed meanwhile
                if self.upstream_conn is None:
                    self.upstream_conn = http.client.HTTPConnection(
                        target.hostname or "", target.port, timeout=120
                    )
                try:
                    self.upstream_conn.request(method, path, body=body or None, headers=headers)
                    answer = self.upstream_conn.getresponse()
                    data = answer.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionError):
                    self.upstream_conn.close()
                    self.upstream_conn = None
                    if attempt == 2:
                        raise
            if data and answer.status == 200 and state.rots(method, path):
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            return answer.status, {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}, data

        def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            answer(self, status, headers, data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    return Handler


@contextmanager
def throttling_proxy(upstream: str, refusals: list[int], latency: float = 0.0) -> Iterator[ProxyState]:
    """Serve the proxy on a free local port while the block runs; `refusals`: the statuses the
    first copies get, in order; `latency`: seconds added to every request."""
    state = ProxyState(refusals=list(refusals), latency=latency)
    httpd = Server(("127.0.0.1", 0), _handler(upstream, state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
