"""The connections of tasks/storage/google_api.DirectCalls against a server that behaves as a real
one may: it closes a kept-alive connection while the client is idle, and it refuses an expired
token (401) until the client refreshes it. A small HTTP/1.1 server here, the real storage client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from localdev.servers.listening import Server
from tasks.storage.google_api import DirectCalls

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        server: Any = self.server
        server.seen.append((self.path, self.headers.get("Authorization")))
        if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
            self._answer(401, b'{"error": {"message": "Invalid Credentials"}}')
        else:
            self._answer(200, b"object bytes")
        # An idle timeout's close: no "Connection: close" said, the connection simply ends.
        self.close_connection = server.close_after_each

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:
        pass


def _in_an_hour() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)  # google-auth's naive UTC


@pytest.fixture
def server() -> Iterator[Any]:
    httpd: Any = Server(("127.0.0.1", 0), _Handler)
    httpd.seen, httpd.connections, httpd.token, httpd.close_after_each = [], 0, None, False
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _calls(server: Any, credentials: Any) -> DirectCalls:
    from google.cloud import storage

    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    client = storage.Client(project="p", credentials=credentials, client_options={"api_endpoint": endpoint})
    return DirectCalls(client)


def test_calls_share_one_kept_alive_connection_per_thread(server: Any) -> None:
    from google.auth.credentials import AnonymousCredentials

    calls = _calls(server, AnonymousCredentials())
    assert [calls.get_media("b", f"o{i}", 5) for i in range(3)] == [b"object bytes"] * 3
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_opened_again(server: Any) -> None:
    from google.auth.credentials import AnonymousCredentials

    server.close_after_each = True
    calls = _calls(server, AnonymousCredentials())
    assert [calls.get_media("b", f"o{i}", 5) for i in range(3)] == [b"object bytes"] * 3
    assert [path for path, _ in server.seen] == [
        f"/download/storage/v1/b/b/o/o{i}?alt=media" for i in range(3)
    ]
    assert server.connections == 3


def test_an_expired_token_is_refreshed_on_a_401_and_the_call_sent_again(server: Any) -> None:
    from google.oauth2.credentials import Credentials

    refreshed = []

    def refresh(request: Any, scopes: Any) -> tuple[str, datetime]:
        refreshed.append(request)
        return "fresh", _in_an_hour()

    server.token = "fresh"
    calls = _calls(server, Credentials(token="expired", refresh_handler=refresh))
    assert calls.get_media("b", "o", 5) == b"object bytes"
    assert [auth for _, auth in server.seen] == ["Bearer expired", "Bearer fresh"]
    assert len(refreshed) == 1


def test_a_token_the_server_keeps_refusing_is_named_unauthorized(server: Any) -> None:
    from google.oauth2.credentials import Credentials

    server.token = "never given"
    calls = _calls(
        server, Credentials(token="expired", refresh_handler=lambda request, scopes: ("other", _in_an_hour()))
    )
    with pytest.raises(gexc.Unauthorized, match="Invalid Credentials"):
        calls.get_media("b", "o", 5)
    assert len(server.seen) == 3  # the first try and two refreshes, as google-auth's AuthorizedHttp does
