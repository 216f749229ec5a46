"""Every Google API call's plumbing in one place: a bounded retry, a timeout, and the conversion of
`google.api_core` errors into Backstop's own (`backstop.core.errors`) at the call site, plus the
CRC32C that Cloud Storage reports. Components and the backup bucket import these; nothing here knows
what a backup is."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from backstop.core.errors import BackstopError, NotFound, PermissionDenied, Unavailable

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
