"""Every Google API call's plumbing in one place: a bounded retry, a timeout, and the conversion of
`google.api_core` errors into Backstop's own (`backstop.core.errors`) at the call site, plus the
CRC32C that Cloud Storage reports, and the hot Cloud Storage calls (copies) sent straight over
urllib3. Components and the backup bucket import these; nothing here knows what a backup is."""

from __future__ import annotations

import base64
import json
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import quote, urlencode

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from backstop.core.errors import BackstopError, NotFound, PermissionDenied, Unavailable
from blocks.clients import POOL_SIZE  # connections kept per host, as the client's requests session

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
    """Cloud Storage's hot JSON-API calls (a server-side copy, a rewrite) sent straight over a
    urllib3 pool, with the storage client's own endpoint and credentials (google-auth's
    AuthorizedHttp adds and refreshes the token, as it does for the client's requests session).

    Why: a copy through google-cloud-storage and requests costs ~1.1 ms of client CPU, one through
    urllib3 ~0.45 ms (3,000 copies on 16 threads, measured: bench/RESULTS.md). In a backup or
    restore of many small objects the client's CPU is the limit, so this is the copies' speed.
    Downloads (a validation's read-back, manifests) go the same way. Errors are google.api_core's
    (from the HTTP status) and requests' ConnectionError (a dropped connection), as the library
    raises them, so the retry predicates and `converted_errors` treat them alike.
    """

    def __init__(self, client: Any) -> None:
        import certifi
        import urllib3
        from google.auth.transport.urllib3 import AuthorizedHttp

        verify = client._http.verify
        pool = urllib3.PoolManager(
            maxsize=POOL_SIZE,
            retries=False,  # the caller's Retry decides, with its backoff and write ramp
            ca_certs=verify if isinstance(verify, str) else certifi.where(),
        )
        self.http = AuthorizedHttp(client._credentials, http=pool)
        self.base = client._connection.API_BASE_URL.rstrip("/")

    def post(self, path: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """POST `path` (under /storage/v1) with query `params` and no body; the JSON answer."""
        url = (
            f"{self.base}/storage/v1{path}?{urlencode(params)}" if params else f"{self.base}/storage/v1{path}"
        )
        return cast(dict[str, Any], json.loads(self._send("POST", url, timeout)))

    def get_media(self, bucket: str, name: str, timeout: float) -> bytes:
        """The bytes of the live object `name` in `bucket` (one GET, as the library's download)."""
        return self._send(
            "GET", f"{self.base}/download/storage/v1{object_path(bucket, name)}?alt=media", timeout
        )

    def _send(self, method: str, url: str, timeout: float) -> bytes:
        import requests
        import urllib3

        try:
            answer = self.http.urlopen(method, url, headers=_HEADERS[method], timeout=timeout)
        except urllib3.exceptions.HTTPError as exc:  # what the library raises for it: retried alike
            raise requests.exceptions.ConnectionError(f"{method} {url}: {exc}") from exc
        if answer.status >= 300:
            raise gexc.from_http_status(answer.status, f"{method} {url}: {_error_message(answer.data)}")
        return cast(bytes, answer.data)


_HEADERS = {"POST": {"Content-Length": "0", "User-Agent": "backstop"}, "GET": {"User-Agent": "backstop"}}
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


def _error_message(data: bytes) -> str:
    try:
        return str(json.loads(data)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return data[:300].decode(errors="replace")
