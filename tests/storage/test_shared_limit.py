"""The shared write limit on a Prefect server (tasks/storage/shared_limit.py): what a later run finds."""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from localdev.servers.listening import Server, answer
from tasks.storage import shared_limit
from tests.conftest import unique

pytestmark = [pytest.mark.flow]


def test_a_new_run_starts_with_an_empty_queue_whatever_an_earlier_run_left(prefect_harness: None) -> None:
    bucket, rate = unique("limit"), 100.0
    shared_limit.prepare(bucket, rate)
    slots = shared_limit.SharedSlots(bucket, rate)
    for _ in range(3 * shared_limit.block_for(rate)):  # three blocks: the third waits behind the burst
        slots.take()
    # and writers that were still queued when the run ended: 1,000 slots, 10 s of writes at 100/s (a
    # few queued blocks alone may drain before a loaded machine reads the limit again)
    with shared_limit._client() as client:
        client.increment_concurrency_slots(
            names=[shared_limit.limit_name(bucket)], slots=1000, mode="rate_limit"
        )
    shared_limit.stop(bucket)
    left = shared_limit.read_rate(bucket)
    assert left is not None and left[1] > 500, left  # queued when the run ended

    shared_limit.prepare(bucket, 10.0)  # a later run, at a lower rate: its writers must not wait that out
    try:
        assert shared_limit.read_rate(bucket)[:2] == (10.0, 0)  # type: ignore[index]
    finally:
        shared_limit.stop(bucket)


@contextmanager
def busy_api(upstream: str, busy: int) -> Iterator[list[int]]:
    """A local server in front of the Prefect API that answers its first `busy` slot increments
    503, as a server on SQLite does while another write holds the database, and forwards every
    other request. Yields the statuses it answered increments with."""
    target = urlsplit(upstream)
    answered: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/v2/concurrency_limits/increment") and answered.count(503) < busy:
                answered.append(503)
                self._answer(
                    503, {"Content-Type": "application/json"}, b'{"exception_message": "Service Unavailable"}'
                )
                return
            connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
            connection.request(self.command, target.path + self.path, body=body or None, headers=headers)
            reply = connection.getresponse()
            data = reply.read()
            if self.path.endswith("/increment"):
                answered.append(reply.status)
            skip = {"transfer-encoding", "content-length", "connection"}
            self._answer(reply.status, {k: v for k, v in reply.getheaders() if k.lower() not in skip}, data)

        def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            answer(self, status, headers, data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _relay

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{server.server_address[1]}"}):
            yield answered
    finally:
        server.shutdown()
        server.server_close()


def test_a_writer_takes_its_block_soon_after_the_server_was_busy(prefect_harness: None) -> None:
    """Three busy answers (503) to a writer's request for its block: the block is taken once the
    server answers, not after Prefect's client's own waits of 2, 4 and 8 s (14 s in all), during
    which every copy thread of the writer's process would wait on it."""
    bucket, rate = unique("busy"), 1000.0
    shared_limit.prepare(bucket, rate)
    try:
        with busy_api(str(PREFECT_API_URL.value()), busy=3) as answered:
            started = time.monotonic()
            shared_limit.SharedSlots(bucket, rate).take()
            took = time.monotonic() - started
        # busy three times, then the block added on the server once (the test server on SQLite may
        # itself answer busy besides, under a loaded suite: those are asked again too)
        assert answered[:3] == [503, 503, 503] and answered[-1] == 200, answered
        assert answered.count(200) == 1 and set(answered) == {503, 200}, answered
        assert took < 5.0, f"the block took {took:.1f} s"
    finally:
        shared_limit.stop(bucket)
