"""Object retention (Object Retention Lock) on backup objects: the Cloud Storage calls.

`extend_retention(store, keys, until)` gives every key a retain-until of at least `until` in the
store's mode (`BackupStore.lock`), in parallel batches inside the calling task (one patch per object,
never one Prefect task per object). It never shortens: a patch the bucket refuses because the object
is already retained longer (an Unlocked retention cannot be shortened without an override, a Locked
one never) is read back and counts as done. `retained_until(blob)` reads a listed or fetched object's
retain-until. Nothing happens on a bucket without object retention enabled (fake-gcs-server keeps no
bucket configuration): `retention_enabled` says so once per store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import BackstopError, NotFound, Unavailable
from tasks.storage.bucket import BackupStore
from tasks.storage.copies import Retention
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors
from tasks.storage.parallel import batched, parallel_map

BATCH = 1000  # keys patched per parallel batch
WORKERS = 16


def retained_until(blob: Any) -> datetime | None:
    """The object's own retain-until (its object retention), or None."""
    retention = getattr(blob, "retention", None)
    return retention.retain_until_time if retention is not None else None


def retention_enabled(store: BackupStore) -> bool:
    """Whether the store locks objects: it has a lock and its bucket has object retention enabled."""
    if store.lock is None:
        return False
    if store.retention_enabled is None:
        bucket = store.checked  # the backup's own check of the bucket read it a moment ago
        if bucket is None:
            with converted_errors(f"bucket {store.where()}"):
                bucket = store.client.get_bucket(store.bucket_name, timeout=TIMEOUT, retry=RETRY)
        store.retention_enabled = bucket.object_retention_mode == "Enabled"
        if not store.retention_enabled:
            logging.getLogger(__name__).warning(
                "%s has no object retention enabled: backups are not locked (create the bucket with it: "
                "`backstop bootstrap` does)",
                store.where(),
            )
    return bool(store.retention_enabled)


def _extend(store: BackupStore, key: str, until: datetime) -> str | None:
    """Lock one object until `until` at least; a problem, or None."""
    assert store.lock is not None
    blob = store.bucket.blob(key)
    blob.retention.mode = store.lock.mode
    blob.retention.retain_until_time = until
    try:
        with converted_errors(f"retention of {store.where(key)}"):
            try:
                blob.patch(timeout=TIMEOUT, retry=RETRY)
            except gexc.Forbidden:
                found = store.bucket.get_blob(key, timeout=TIMEOUT, retry=RETRY)
                current = retained_until(found) if found is not None else None
                if found is None or (current is not None and current >= until):
                    return None  # gone (prune's business), or already retained longer
                raise
    except NotFound:
        return None
    except BackstopError as exc:
        return str(exc)
    return None


def created_retained(
    store: BackupStore, key: str, retention: Retention | None, make: Callable[[], Any]
) -> Any:
    """The object `make()` writes at `key` of `store`, created with `retention` (None: none asked).

    A key already made that the bucket will not let be replaced (retained, or younger than the
    bucket's retention policy: a request retried after its answer was lost, a unit run again, a copy
    beside this one) is taken as it is; the caller checks its checksum. Either way it ends retained
    until `retention`'s date (a patch where the server did not apply it, or an older copy's is shorter).
    """
    try:
        made = make()
    except gexc.Forbidden:
        made = store.stat(key)
        if made is None:
            raise
    if retention is not None:
        ensure_retained(store, made, retention[1])
    return made


def ensure_retained(store: BackupStore, blob: Any, until: datetime) -> None:
    """Retain `blob` (an object of the store, as the API answered it) until `until` at least: a patch
    when it is not yet; a failure raises (PermissionDenied / Unavailable naming it)."""
    current = retained_until(blob)
    if current is not None and current >= until:
        return
    problem = _extend(store, blob.name, until)
    if problem:
        raise Unavailable(f"object created without its retention, and not retained since: {problem}")


def extend_retention(store: BackupStore, keys: Iterable[str], until: datetime) -> list[str]:
    """Retain `keys` until `until` at least (never shortened). Returns problems, one per key."""
    if not retention_enabled(store):
        return []
    problems: list[str] = []
    for batch in batched(keys, BATCH):
        problems += [p for p in parallel_map(lambda k: _extend(store, k, until), batch, WORKERS) if p]
    return problems
