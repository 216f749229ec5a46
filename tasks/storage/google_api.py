"""Every Google API call's plumbing in one place: a bounded retry, a timeout, and the conversion of
`google.api_core` errors into Backstop's own (`backstop.core.errors`) at the call site, plus the
CRC32C that Cloud Storage reports, and the hot Cloud Storage calls (copies) sent straight over
http.client. Components and the backup bucket import these; nothing here knows what a backup is."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import ssl
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlencode

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from backstop.core.errors import BackstopError, NotFound, PermissionDenied, Unavailable

_log = logging.getLogger(__name__)
T = TypeVar("T")

# Transient errors are retried for a bounded time, never for the client's default 10 minutes.
RETRY = Retry(
    initial=0.2, maximum=2.0, multiplier=2.0, timeout=float(os.environ.get("BACKSTOP_RETRY_TIMEOUT", "30"))
)
TIMEOUT = 60.0


def crc32c_b64(data: bytes) -> str:
    """CRC32C of `data`, base64 big-endian, as Cloud Storage reports it."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


@contextmanager
def converted_errors(what: str) -> Iterator[None]:
    """Turn Google API errors into Backstop errors whose message names `what`."""
    try:
        yield
    except BackstopError:
        raise
    except gexc.NotFound as exc:
        raise NotFound(f"{what}: not found ({exc.message})") from exc
    except (gexc.Forbidden, gexc.Unauthorized) as exc:
        raise PermissionDenied(f"{what}: permission denied ({exc.message})") from exc
    except gexc.GoogleAPICallError as exc:
        raise Unavailable(f"{what}: {type(exc).__name__} ({exc.message})") from exc
    except (gexc.RetryError, ConnectionError, TimeoutError, OSError) as exc:
        raise Unavailable(f"{what}: service unavailable ({exc})") from exc
    except Exception as exc:  # requests' ConnectionError and friends are not OSError subclasses everywhere
        if type(exc).__module__.startswith(("requests", "urllib3", "google.auth")):
            raise Unavailable(f"{what}: service unavailable ({exc})") from exc
        raise


class DirectCalls:
    """Cloud Storage's hot JSON-API calls (a server-side copy, a rewrite, a download) sent straight
    over http.client, one kept-alive connection per thread, with the storage client's own endpoint
    and credentials (google-auth's `before_request` adds the token and refreshes it when due, as
    the client's session does; a 401 refreshes it and the call is sent again, at most twice).

    `batch` sends many such calls as one request to the batch endpoint (multipart/mixed, as
    https://cloud.google.com/storage/docs/batch describes it), each answered on its own.

    Why: in a backup or restore of many small objects the client's CPU is the limit. A copy through
    google-cloud-storage and requests costs ~1.1 ms of client CPU, through urllib3 and google-auth's
    AuthorizedHttp ~0.45 ms, through http.client ~0.27 ms (measured: bench/RESULTS.md); what urllib3
    adds per request (URL parsing, the pool's bookkeeping) is what this saves. Errors are
    google.api_core's (from the HTTP status) and requests' ConnectionError (a dropped connection),
    as the library raises them, so the retry predicates and `converted_errors` treat them alike. A
    kept-alive connection the server closed while idle is opened again and the call sent again,
    once, as urllib3 does.
    """

    def __init__(self, client: Any) -> None:
        from urllib.parse import urlsplit

        import certifi

        base = urlsplit(client._connection.API_BASE_URL)
        self.https = base.scheme == "https"
        self.host, self.port = base.hostname or "", base.port
        self.root = base.path.rstrip("/")
        self.origin = f"{base.scheme}://{base.netloc}"  # what error messages name, with each target
        self.credentials = client._credentials
        self.context: ssl.SSLContext | None = None
        if self.https:
            verify = client._http.verify
            self.context = ssl.create_default_context(
                cafile=verify if isinstance(verify, str) else certifi.where()
            )
        self._auth: Any = None  # google-auth's transport for a token refresh, made on the first one
        self._local = threading.local()

    def post(
        self, path: str, params: dict[str, Any], timeout: float, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST `path` (under /storage/v1) with query `params` and `body` (JSON; none when None); the
        JSON answer."""
        target = (
            f"{self.root}/storage/v1{path}?{urlencode(params)}" if params else f"{self.root}/storage/v1{path}"
        )
        data = json.dumps(body).encode() if body is not None else None
        return cast(dict[str, Any], json.loads(self._send("POST", target, timeout, data)[1]))

    @property
    def batches(self) -> bool:
        """Whether this endpoint takes batch requests (not yet shown otherwise, in this process)."""
        return self.origin + self.root not in _NO_BATCHES

    def no_batches(self) -> None:
        """This endpoint has no batch endpoint: every client of this process sends calls alone."""
        _NO_BATCHES.add(self.origin + self.root)

    def batch(self, calls: Sequence[Call], timeout: float) -> list[dict[str, Any] | Exception]:
        """Send each (method, path under /storage/v1, query params, JSON body or None) of `calls`
        as one request to the JSON API's batch endpoint (at most `BATCH_CALLS`); each call's JSON
        answer ({} when it has none), or its error as google.api_core raises it. A failure of the
        batch request itself is raised."""
        boundary = f"backstop_{uuid.uuid4().hex}"
        out = io.BytesIO()
        for n, (method, path, params, body) in enumerate(calls):
            data = json.dumps(body).encode() if body is not None else b""
            query = f"?{urlencode(params)}" if params else ""
            out.write(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{n}>\r\n\r\n"
                f"{method} {self.root}/storage/v1{path}{query} HTTP/1.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            )
            out.write(data + b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
        content_type, answer = self._send(
            "POST",
            f"{self.root}/batch/storage/v1",
            timeout,
            out.getvalue(),
            f"multipart/mixed; boundary={boundary}",
        )
        replies = _batch_replies(answer, content_type)
        results: list[dict[str, Any] | Exception] = []
        for n, (method, path, _, _) in enumerate(calls):
            status, data = replies.get(f"response-{n}", (500, b"no answer in the batch response"))
            if status >= 300:
                results.append(
                    _call_error(status, f"{method} {self.origin}{self.root}/storage/v1{path}", data)
                )
            else:
                results.append(json.loads(data) if data.strip() else {})
        return results

    def get_media(self, bucket: str, name: str, timeout: float) -> bytes:
        """The bytes of the live object `name` in `bucket` (one GET, as the library's download)."""
        return self._send(
            "GET", f"{self.root}/download/storage/v1{object_path(bucket, name)}?alt=media", timeout
        )[1]

    def _send(
        self,
        method: str,
        target: str,
        timeout: float,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[str, bytes]:
        """Send one request (a token refreshed on a 401); the answer's (Content-Type, body)."""
        url = self.origin + target
        headers = dict(_HEADERS[method])
        if data is not None:
            headers |= {"Content-Type": content_type, "Content-Length": str(len(data))}
        self.credentials.before_request(self._auth_transport(), method, url, headers)
        refreshed = 0
        while True:
            status, kind, answer = self._exchange(method, target, headers, timeout, data)
            if status == 401 and refreshed < MAX_REFRESHES and self._refresh(headers, method, url):
                refreshed += 1
                continue
            if status >= 300:
                raise gexc.from_http_status(status, f"{method} {url}: {_error_message(answer)}")
            return kind, answer

    def _exchange(
        self, method: str, target: str, headers: dict[str, str], timeout: float, data: bytes | None = None
    ) -> tuple[int, str, bytes]:
        """One request on this thread's connection: (status, Content-Type, body)."""
        import requests

        connection, reused = self._connection(timeout)
        try:
            connection.request(method, target, body=data, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheader("Content-Type", ""), answer.read()
        except (http.client.HTTPException, OSError) as exc:
            connection.close()
            self._local.connection = None
            if reused and isinstance(exc, _STALE):  # closed by the server while idle: again, on a new one
                return self._exchange(method, target, headers, timeout, data)
            raise requests.exceptions.ConnectionError(f"{method} {self.origin}{target}: {exc}") from exc

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection (opened when there is none) and whether it served a call before."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = (
                http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
                if self.https
                else http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            )
            self._local.connection = connection
            return connection, False
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection, True

    def _auth_transport(self) -> Any:
        if self._auth is None:
            import google.auth.transport.requests

            self._auth = google.auth.transport.requests.Request()
        return self._auth

    def _refresh(self, headers: dict[str, str], method: str, url: str) -> bool:
        """A 401: refresh the token (credentials that have one) and put it in `headers`."""
        if not getattr(self.credentials, "token", None):
            return False
        self.credentials.refresh(self._auth_transport())
        self.credentials.before_request(self._auth_transport(), method, url, headers)
        return True


_HEADERS = {"POST": {"Content-Length": "0", "User-Agent": "backstop"}, "GET": {"User-Agent": "backstop"}}
MAX_REFRESHES = 2  # a 401 refreshes the token and sends the call again, at most twice (as AuthorizedHttp)
# A kept-alive connection the server closed while it was idle: the call never reached it (http.client's
# RemoteDisconnected is a ConnectionResetError; over TLS the close shows as an SSL EOF).
_STALE = (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
_direct: weakref.WeakKeyDictionary[Any, DirectCalls | None] = weakref.WeakKeyDictionary()
_direct_lock = threading.Lock()


def direct_calls(client: Any) -> DirectCalls | None:
    """The DirectCalls of a storage client, made once; None where the client's requests session
    reads the environment per request (a proxy or a netrc file is set: blocks.clients.environment_once),
    and then the library's calls are used, which honour them."""
    with _direct_lock:
        if client not in _direct:
            _direct[client] = DirectCalls(client) if client._http.trust_env is False else None
        return _direct[client]


def object_path(bucket: str, name: str) -> str:
    """The JSON API path of an object: /b/<bucket>/o/<name, escaped as the library does>."""
    return f"/b/{quote(bucket, safe='')}/o/{quote(name, safe='~')}"


BATCH_CALLS = 100  # Google's limit of calls in one batch request


def batch_groups(items: Sequence[T], workers: int) -> list[list[T]]:
    """`items` in groups for batch requests: at most BATCH_CALLS a group, and as many groups as
    `workers` when the items are fewer (every worker busy, also when each call goes alone)."""
    size = min(BATCH_CALLS, max(1, -(-len(items) // workers)))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _batch_replies(body: bytes, content_type: str) -> dict[str, tuple[int, bytes]]:
    """The parts of a batch response: Content-ID -> (status, body) of the HTTP response it holds."""
    kind, _, params = content_type.partition(";")
    boundary = next(
        (
            v.strip().strip('"')
            for k, _, v in (p.strip().partition("=") for p in params.split(";"))
            if k == "boundary"
        ),
        "",
    )
    if kind.strip().lower() != "multipart/mixed" or not boundary:
        raise gexc.InternalServerError(f"batch response is {content_type!r}, not multipart/mixed")
    replies: dict[str, tuple[int, bytes]] = {}
    for piece in body.split(b"--" + boundary.encode())[1:]:
        if piece.startswith(b"--"):
            break
        head, _, reply = piece.partition(b"\r\n\r\n")
        content_id = ""
        for line in head.split(b"\r\n"):
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == "content-id":
                content_id = value.strip().strip("<>")
        status_line, _, rest = reply.partition(b"\r\n")
        headers, _, data = rest.partition(b"\r\n\r\n")
        length = next(
            (
                int(v)
                for k, _, v in (h.partition(b":") for h in headers.split(b"\r\n"))
                if k.strip().lower() == b"content-length"
            ),
            None,
        )
        data = data[:length] if length is not None else data.removesuffix(b"\r\n")
        replies[content_id] = (int(status_line.split(b" ")[1]), data)
    return replies


Call = tuple[str, str, dict[str, Any], dict[str, Any] | None]  # method, path, query, JSON body
_NO_BATCHES: set[str] = set()  # endpoints that showed they take no batch requests


def batched_calls(
    client: Any, calls: Sequence[Call], retry: Any = RETRY
) -> list[dict[str, Any] | Exception] | None:
    """`calls` sent by `client` as one batch request (`DirectCalls.batch`, retried by `retry`): each
    call's answer or error. None when they were not sent as one: a client whose calls go through
    the library (`direct_calls`), a server with no batch endpoint or refusing the batch request
    (404, 405, 501, 400: then never tried again), or a batch request that failed otherwise; the
    caller then makes each call alone, whose error is the one to
    report: a batch only ever saves requests."""
    direct = direct_calls(client)
    if direct is None or not direct.batches or not calls:
        return None
    try:
        return cast(list[dict[str, Any] | Exception], retry(direct.batch)(calls, TIMEOUT))
    except (gexc.NotFound, gexc.MethodNotAllowed, gexc.MethodNotImplemented, gexc.BadRequest):
        # a server without the batch endpoint, or one that does not take it as sent: one request a
        # call from now on (a batch request that failed otherwise is tried again next time)
        direct.no_batches()
    except Exception as exc:  # noqa: BLE001 - each call is then made alone
        _log.debug("batch of %d calls failed (%s): made one at a time", len(calls), exc)
    return None


def _call_error(status: int, what: str, data: bytes) -> Exception:
    """The google.api_core error of one call's answer, its errors' reasons kept (as the library's)."""
    try:
        errors = json.loads(data)["error"].get("errors") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        errors = []
    return gexc.from_http_status(status, f"{what}: {_error_message(data)}", errors=errors)


def _error_message(data: bytes) -> str:
    try:
        return str(json.loads(data)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return data[:300].decode(errors="replace")
