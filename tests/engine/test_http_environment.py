"""The storage client reads the environment's HTTP settings once (blocks.clients.environment_once):
requests must go out as requests' own per-request lookups would send them."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from blocks.clients import storage_client
from tasks.storage.copies import copy_object, rewrite
from tasks.storage.google_api import direct_calls
from tasks.storage.objects import ObjectStore

HTTP_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC")  # fmt: skip


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No proxy, CA bundle or netrc settings (a home without a netrc file)."""
    for name in HTTP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    """An HTTP proxy on 127.0.0.1 that answers 404 to everything and records the request lines."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.requestline)
            self.send_response(404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxied(
    bare_environment: None, monkeypatch: pytest.MonkeyPatch, proxy: tuple[str, list[str]]
) -> tuple[Any, list[str]]:
    """A storage client with that proxy in the environment (and no server where it points), and
    the request lines the proxy saw."""
    address, seen = proxy
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HTTP_PROXY", address)
    return storage_client("proj"), seen


def test_a_proxy_in_the_environment_is_still_used(proxied: tuple[Any, list[str]]) -> None:
    client, seen = proxied
    assert client.bucket("some-bucket").exists(timeout=10) is False  # the proxy's 404
    assert seen and seen[0].startswith("GET http://127.0.0.1:9/storage/v1/b/some-bucket")


def test_copies_and_downloads_go_through_a_proxy_in_the_environment(proxied: tuple[Any, list[str]]) -> None:
    """With a proxy set, the hot calls leave the direct urllib3 path for the library's, which honours it."""
    from google.api_core import exceptions as gexc

    from backstop.core.errors import NotFound

    client, seen = proxied
    assert direct_calls(client) is None
    with pytest.raises(NotFound):
        ObjectStore(client, "b").get_bytes("k")
    with pytest.raises(gexc.NotFound):
        copy_object(client.bucket("src").blob("a"), client.bucket("dst"), "a")
    with pytest.raises(gexc.NotFound):
        rewrite(client.bucket("src").blob("a"), client.bucket("dst").blob("a"))
    sent = [
        line.split()[:2] for line in seen if "/o/" in line
    ]  # (a missing object's bucket is asked about too)
    assert [method for method, _ in sent] == ["GET", "POST", "POST"]
    assert sent[0][1].startswith("http://127.0.0.1:9/download/storage/v1/b/b/o/k?")
    assert sent[1][1].startswith("http://127.0.0.1:9/storage/v1/b/src/o/a/copyTo/b/dst/o/a")
    assert sent[2][1].startswith("http://127.0.0.1:9/storage/v1/b/src/o/a/rewriteTo/b/dst/o/a")


@pytest.mark.parametrize("bundle", [None, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_requests_carry_the_settings_requests_itself_would_find(
    bare_environment: None, monkeypatch: pytest.MonkeyPatch, tmp_path, bundle: str | None
) -> None:
    if bundle:
        (tmp_path / "ca.pem").write_text("")
        monkeypatch.setenv(bundle, str(tmp_path / "ca.pem"))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    session = storage_client("proj")._http
    assert session.trust_env is False  # nothing to look up per request
    for url in ("https://storage.googleapis.com/storage/v1/b/x", "http://127.0.0.1:9/storage/v1/b/x"):
        ours = session.merge_environment_settings(url, {}, None, None, None)
        theirs = requests.Session().merge_environment_settings(url, {}, None, None, None)
        assert ours == theirs
        assert ours["verify"] == (str(tmp_path / "ca.pem") if bundle else True)
