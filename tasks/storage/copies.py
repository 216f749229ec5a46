"""Cloud Storage copies: one pool of copy workers per process, a write ramp per destination bucket.

Every object copy of a Cloud Storage backup (source -> pool), restore (pool -> target) and scratch
cleanup runs on one thread pool of `copy_workers()` threads shared by every batch of the process: batches
that run at once (several backup units, a restore's stream) queue their objects on the same workers,
so a batch's last slow object never leaves the others idle and the emulator or the bucket never sees
more than `copy_workers()` requests from this process at once.

Each write first takes a slot of its destination bucket's write ramp (backstop/core/write_ramp.py:
starts at the settings' `gcs_write_rate`, doubles at most every 20 minutes of sustained load), and
runs with `copy_retry`: google-cloud-storage's own retry predicate (429, 408, 5xx, dropped
connections) with truncated exponential backoff and full jitter (google.api_core's retry), whose
errors also slow the ramp down. The bytes never pass through the worker: copies are server-side.

Small objects are copied up to BATCH_CALLS at a time in one request to the JSON API's batch
endpoint (`rewrite_many`); a copy the batch did not make (its error, a server without batches) is
then made alone, retried as above: the batch saves requests, the copy alone stays the authority.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from google.api_core.retry import Retry
from google.cloud.storage.retry import DEFAULT_RETRY as STORAGE_RETRY

from backstop.core.write_ramp import DEFAULT_RATE, WriteRamp
from tasks.storage.google_api import BATCH_CALLS, RETRY, TIMEOUT, batched_calls, direct_calls, object_path
from tasks.storage.shared_limit import SharedSlots

Retention = tuple[str, datetime]  # an object retention: (mode "Unlocked" | "Locked", retain-until)

T = TypeVar("T")
# Objects up to this size are copied in one call (a copy, or a rewrite in a batch request); larger
# ones by rewrite, its resumption tokens followed.
ONE_CALL_BYTES = 16 * 1024 * 1024
# Copies in flight per process (per worker on a Dask cluster): BACKSTOP_COPY_THREADS, default 16.
# Read when used (a warm `backstop` process runs each command with the command's environment).


def copy_workers() -> int:
    return int(os.environ.get("BACKSTOP_COPY_THREADS") or 16)


# Google's recommended backoff for Cloud Storage: from 1 s, doubling, at most 32 s between tries;
# the total stays bounded by the store's retry timeout (BACKSTOP_RETRY_TIMEOUT).
BACKOFF = {"initial": 1.0, "maximum": 32.0, "multiplier": 2.0}

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_ramps: dict[str, BucketRamp] = {}


class BucketRamp:
    """The write ramp of one destination bucket, shared by every thread of this process; with
    `shared`, the bucket's one rate limit on the Prefect server, shared by every process writing to
    it (tasks/storage/shared_limit.py: a step fanned out over a Dask cluster)."""

    def __init__(self, bucket: str, initial: float, shared: bool = False) -> None:
        self.bucket = bucket
        self.ramp = WriteRamp(initial)
        self.shared = SharedSlots(bucket, initial) if shared else None
        self._lock = threading.Lock()
        # The storage client's predicate (429, 408, 5xx, connection errors), Google's backoff.
        self.retry = Retry(
            predicate=STORAGE_RETRY._predicate,
            timeout=RETRY.timeout,
            on_error=self._throttled,
            **BACKOFF,
        )

    def wait(self, writes: int = 1) -> None:
        """Block until this bucket may take `writes` more writes."""
        if self.shared is not None:
            for _ in range(writes):
                self.shared.take()
            return
        with self._lock:
            now = time.monotonic()
            delay = max(self.ramp.reserve(now) for _ in range(writes))
        if delay > 0:
            time.sleep(delay)

    def batch_size(self) -> int:
        """The writes one batch request may carry: a tenth of a second's worth at the bucket's
        current rate (at least 1, at most BATCH_CALLS), so that a batch is no larger a burst of
        writes than the ramp lets through."""
        with self._lock:
            rate = self.ramp.rate
        return max(1, min(BATCH_CALLS, int(rate / 10)))

    def batches(self, items: Sequence[T]) -> Iterator[Sequence[T]]:
        """`items` in parts of `batch_size()`, each part's writes taken from the ramp before it is
        given out (for batch requests of one write an item)."""
        start = 0
        while start < len(items):
            part = items[start : start + self.batch_size()]
            self.wait(len(part))
            yield part
            start += len(part)

    def _throttled(self, exc: Exception) -> None:
        with self._lock:
            before = self.ramp.rate
            self.ramp.throttled(time.monotonic())
            after = self.ramp.rate
        if self.shared is not None:
            self.shared.throttled(self.ramp.initial)
        _log.warning(
            "gs://%s answered %s: backing off (writes now at most %.0f/s, were %.0f/s)",
            self.bucket,
            getattr(exc, "code", None) or type(exc).__name__,
            after,
            before,
        )


def ramp_for(bucket: str, initial: float | None = None, shared: bool | None = None) -> BucketRamp:
    """The write ramp of `bucket` in this process; `initial` (writes/s) starts it over when changed,
    and so does `shared` (True: the bucket's rate limit on the Prefect server) when changed."""
    with _lock:
        ramp = _ramps.get(bucket)
        if (
            ramp is None
            or (initial is not None and initial != ramp.ramp.initial)
            or (shared is not None and shared != (ramp.shared is not None))
        ):
            was = ramp.ramp.initial if ramp is not None else DEFAULT_RATE
            ramp = _ramps[bucket] = BucketRamp(bucket, initial or was, bool(shared))
        return ramp


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=copy_workers(), thread_name_prefix="backstop-copy")
        return _pool


def run_all(fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """`fn` over `items` on the shared copy workers, in order; the first error cancels the rest."""
    if not items:
        return []
    futures = [_workers().submit(fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()


def run_stream(fn: Callable[[Any], Any], items: Iterable[Any], ahead: int | None = None) -> None:
    """`fn` over `items` on the shared copy workers, taking items lazily (at most `ahead` queued or
    running); the first error stops taking items, cancels what has not started, and is raised."""
    limit = ahead or 2 * copy_workers()
    running: set[Future[Any]] = set()
    try:
        for item in items:
            if len(running) >= limit:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()
            running.add(_workers().submit(fn, item))
        for f in wait(running).done:
            f.result()
    finally:
        for f in running:
            f.cancel()


def rewrite(src_blob: Any, dest_blob: Any, retention: Retention | None = None) -> Any:
    """Server-side rewrite of `src_blob` (its generation, when it names one) to `dest_blob`'s
    bucket and name, with `dest_blob`'s KMS key, following rewrite tokens for large objects (each
    call is one write on the destination's ramp); returns the new object as a Blob. `retention`
    (mode, retain-until): the new object is created with that object retention."""
    ramp = ramp_for(dest_blob.bucket.name)
    direct = direct_calls(dest_blob.client)
    if direct is None:  # a proxy or netrc file in the environment: the library honours them
        if retention:  # sent as the destination's metadata
            dest_blob.retention.mode, dest_blob.retention.retain_until_time = retention
        ramp.wait()
        token, _, _ = dest_blob.rewrite(src_blob, timeout=TIMEOUT, retry=ramp.retry)
        while token is not None:
            ramp.wait()
            token, _, _ = dest_blob.rewrite(src_blob, token=token, timeout=TIMEOUT, retry=ramp.retry)
        return dest_blob
    path = f"{object_path(src_blob.bucket.name, src_blob.name)}/rewriteTo{object_path(dest_blob.bucket.name, dest_blob.name)}"
    params: dict[str, Any] = {}
    if src_blob.generation:
        params["sourceGeneration"] = src_blob.generation
    if dest_blob.kms_key_name and "cryptoKeyVersions" not in dest_blob.kms_key_name:
        params["destinationKmsKeyName"] = dest_blob.kms_key_name
    body = _retention_body(retention)
    while True:
        ramp.wait()
        answer = ramp.retry(direct.post)(path, params, TIMEOUT, body)
        if answer["done"]:
            return _as_blob(answer["resource"], dest_blob.bucket)
        params["rewriteToken"] = answer["rewriteToken"]


class Copy(NamedTuple):
    """One object copy of a batch: the source (bucket, name, generation: None for the live one)
    and the destination's name (in the batch's destination bucket)."""

    bucket: str
    name: str
    generation: int | None
    dest_name: str


def rewrite_many(
    client: Any,
    dest_bucket: Any,
    copies: Sequence[Copy],
    kms_key_name: str | None = None,
    retention: Retention | None = None,
) -> list[Any | None]:
    """Server-side rewrites of small objects into `dest_bucket` (with `kms_key_name`, `retention`),
    as `rewrite` makes them, sent by `client` as one request to the JSON API's batch endpoint (at
    most BATCH_CALLS); each new object as a Blob, or None for a rewrite the batch did not finish: an
    error, a rewrite needing more calls, or no batch endpoint. The caller makes those one at a time
    (`rewrite`, `copy_object`: retried, their errors raised), so a batch only ever saves requests.

    Why: one request per copy costs the client ~0.27 ms of CPU and the server its HTTP handling; in
    a batch of 100, 10,000 copies took 0.3 s of client CPU instead of 2.2 s and 1.8 s of the local
    server's instead of 3.5 (bench/RESULTS.md). Each copy is still one write on the destination's
    ramp, as Cloud Storage counts it."""
    if not copies:
        return []
    ramp = ramp_for(dest_bucket.name)
    body = _retention_body(retention)
    key = (
        {"destinationKmsKeyName": kms_key_name}
        if kms_key_name and "cryptoKeyVersions" not in kms_key_name
        else {}
    )
    calls = [
        (
            "POST",
            f"{object_path(c.bucket, c.name)}/rewriteTo{object_path(dest_bucket.name, c.dest_name)}",
            ({"sourceGeneration": c.generation} if c.generation else {}) | key,
            body,
        )
        for c in copies
    ]
    made: list[Any | None] = []
    step, direct = ramp.batch_size(), direct_calls(client)
    for start in range(0, len(calls), step):
        part = calls[start : start + step]
        if direct is None or not direct.batches:
            made += [None] * (len(calls) - start)
            break
        ramp.wait(len(part))
        found = batched_calls(client, part, ramp.retry)
        answers: list[Any] = [*found] if found is not None else [None] * len(part)
        made += [
            _as_blob(a["resource"], dest_bucket) if isinstance(a, dict) and a.get("done") else None
            for a in answers
        ]
    return made


def made_in_batches(
    client: Any,
    dest_bucket: Any,
    copies: Iterable[tuple[Copy, int]],
    kms_key_name: str | None = None,
    retention: Retention | None = None,
) -> dict[str, Any]:
    """Of `copies` (each with its size), those up to ONE_CALL_BYTES made in batch requests
    (`rewrite_many`): destination name -> the new object. The caller makes every other copy alone:
    the larger ones, and any the batches did not make."""
    small = [copy for copy, size in copies if size <= ONE_CALL_BYTES]
    made = rewrite_many(client, dest_bucket, small, kms_key_name, retention)
    return {copy.dest_name: blob for copy, blob in zip(small, made, strict=True) if blob is not None}


def copy_object(src_blob: Any, dest_bucket: Any, dest_name: str, retention: Retention | None = None) -> Any:
    """Server-side copy of `src_blob` (its generation, when it names one) to `dest_name` in
    `dest_bucket`, in one call (objects up to a few MB with no KMS key; `rewrite` for the others), on the
    destination's write ramp; returns the new object as a Blob. `retention` (mode, retain-until): the
    copy is created with that object retention, in the same call (the destination's metadata in the
    request body; the rest of it is the source's)."""
    ramp = ramp_for(dest_bucket.name)
    ramp.wait()
    direct = direct_calls(src_blob.client)  # the source bucket's client sends it, as in the library
    if direct is None:  # a proxy or netrc file in the environment: the library honours them
        if retention:  # the library's copy sends no metadata: a rewrite does
            return rewrite(src_blob, dest_bucket.blob(dest_name), retention)
        return src_blob.bucket.copy_blob(
            src_blob, dest_bucket, dest_name, source_generation=src_blob.generation,
            timeout=TIMEOUT, retry=ramp.retry,
        )  # fmt: skip
    path = (
        f"{object_path(src_blob.bucket.name, src_blob.name)}/copyTo{object_path(dest_bucket.name, dest_name)}"
    )
    params = {"sourceGeneration": src_blob.generation} if src_blob.generation else {}
    return _as_blob(ramp.retry(direct.post)(path, params, TIMEOUT, _retention_body(retention)), dest_bucket)


def _retention_body(retention: Retention | None) -> dict[str, Any] | None:
    """The destination metadata that creates an object with `retention` (None: none sent)."""
    if retention is None:
        return None
    mode, until = retention
    return {
        "retention": {
            "mode": mode,
            "retainUntilTime": until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
    }


def _as_blob(resource: dict[str, Any], bucket: Any) -> Any:
    """The Blob of an object resource the JSON API answered (as the library's listings make them)."""
    blob = bucket.blob(resource["name"])
    blob._set_properties(resource)
    return blob
