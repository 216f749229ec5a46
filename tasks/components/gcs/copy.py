"""Cloud Storage copies of the gcs component: backup (source -> pool), restore (pool -> target),
scratch cleanup. They run on the shared copy workers and write ramps of `tasks/storage/copies.py`;
the bytes never pass through the worker: copies are server-side."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from backstop.core.errors import Conflict, NotFound, Unavailable, ValidationFailed
from backstop.core.manifest import ManifestEntry
from tasks.components.gcs.plan import (
    KEPT_PROPERTIES,
    Action,
    SourceObject,
    entry_for,
    pool_key,
    source_object,
)
from tasks.storage.bucket import BackupStore
from tasks.storage.copies import (
    ONE_CALL_BYTES,
    Copy,
    Retention,
    copy_object,
    copy_workers,
    made_in_batches,
    ramp_for,
    rewrite,
    run_all,
    run_stream,
)
from tasks.storage.google_api import BATCH_CALLS, RETRY, TIMEOUT, batch_groups, converted_errors
from tasks.storage.object_lock import created_retained
from tasks.storage.objects import DeleteOutcome, ObjectStore
from tasks.storage.parallel import batched


# -- backup: source -> pool ---------------------------------------------------------------
def _server_copy(
    source: Any,
    obj: SourceObject,
    store: BackupStore,
    key: str,
    retention: Retention | None,
    made: Any | None = None,
) -> Any:
    """Copy one source generation into the pool, server-side, created with `retention`.

    Small objects use the one-call copy; large ones, and any copy that must be encrypted with a
    KMS key, use rewrite with its resumption tokens (the path Google recommends for big objects).
    A key an earlier try already copied to and retained or held by the bucket's retention policy (a
    retried unit, a run that left no checkpoint) cannot be replaced: that copy is taken (a pool key
    names one generation, so its bytes are these; the caller checks its crc32c). `made`: the copy a
    batch request already made.
    """
    if made is not None:
        return created_retained(store, key, retention, lambda: made)
    src = source.blob(obj.name, generation=obj.generation)
    if obj.size <= ONE_CALL_BYTES and store.kms_key_name is None:
        return created_retained(store, key, retention, lambda: copy_object(src, store.bucket, key, retention))
    return created_retained(store, key, retention, lambda: rewrite(src, store.blob(key), retention))


def copy_batch(
    client: Any,
    bucket: str,
    items: list[tuple[SourceObject, str]],
    store: BackupStore,
    rate: float | None = None,
    shared: bool = False,
    retention: Retention | None = None,
) -> list[ManifestEntry]:
    """Copy one batch of source generations into the pool; verify each copy's crc32c.

    The copies run on the process's shared copy workers (see the module docstring); `rate` is
    the write rate (objects/s) the backup bucket starts at (default 1,000); `shared`: take it from
    the bucket's rate limit shared by every worker (tasks/storage/shared_limit.py); `retention`:
    each copy is created with it (tasks/catalog/locks.py `retention_at_write`).
    """

    source = client.bucket(bucket)
    ramp_for(store.bucket_name, rate, shared)

    def copy(item: tuple[SourceObject, str], made: Any | None = None) -> ManifestEntry | None:
        obj, key = item
        try:
            with converted_errors(f"copying gs://{bucket}/{obj.name}#{obj.generation} to {store.where(key)}"):
                dest = _server_copy(source, obj, store, key, retention, made)
        except NotFound:
            # Overwritten or deleted since it was listed: a bucket without versioning keeps no
            # older generation. Take the live one (the backup is then not one point in time for
            # this object, and source_state says so); a deleted object is simply not in it.
            with converted_errors(f"reading gs://{bucket}/{obj.name}"):
                live = source.get_blob(obj.name, timeout=TIMEOUT, retry=RETRY)
            if live is None:
                return None
            obj = source_object(live)
            key = pool_key(bucket, obj.name, obj.generation)
            with converted_errors(f"copying gs://{bucket}/{obj.name}#{obj.generation} to {store.where(key)}"):
                dest = _server_copy(source, obj, store, key, retention)
        if dest.crc32c != obj.crc32c or int(dest.size or 0) != obj.size:
            raise ValidationFailed(
                f"copy of gs://{bucket}/{obj.name} to {store.where(key)} has crc32c {dest.crc32c} / {dest.size} bytes, "
                f"source has {obj.crc32c} / {obj.size}"
            )
        return entry_for(obj, key)

    def copy_group(group: list[tuple[SourceObject, str]]) -> list[ManifestEntry | None]:
        copies = [(Copy(bucket, obj.name, obj.generation, key), obj.size) for obj, key in group]
        made = made_in_batches(client, store.bucket, copies, store.kms_key_name, retention)
        return [copy(item, made.get(item[1])) for item in group]

    copied = run_all(copy_group, batch_groups(items, copy_workers()))
    return [entry for group in copied for entry in group if entry is not None]


# -- restore: pool -> target --------------------------------------------------------------
def _restore_object(target: Any, store: BackupStore, entry: ManifestEntry, made: Any | None = None) -> int:
    """Copy one entry from the pool to `target`, with its properties and custom metadata (`made`:
    the copy a batch request already made)."""
    bucket = target.name
    with converted_errors(f"restoring {store.where(entry.stored_key)} to gs://{bucket}/{entry.name}"):
        dest = made or rewrite(store.bucket.blob(entry.stored_key), target.blob(entry.name))
        # The stored copy may carry an older generation's metadata (same bytes reused): patch
        # to exactly the backed-up properties; a None value removes a key in a JSON-API patch.
        wanted = {p: entry.metadata.get("properties", {}).get(p) for p in KEPT_PROPERTIES}
        custom = entry.metadata.get("custom", {})
        if any(getattr(dest, p, None) != v for p, v in wanted.items()) or (dest.metadata or {}) != custom:
            for prop, value in wanted.items():
                setattr(dest, prop, value)
            dest.metadata = {k: None for k in dest.metadata or {}} | custom
            ramp = ramp_for(bucket)
            ramp.wait()
            dest.patch(timeout=TIMEOUT, retry=ramp.retry)
    if dest.crc32c != entry.crc32c:
        raise ValidationFailed(
            f"restored gs://{bucket}/{entry.name} has crc32c {dest.crc32c}, backup says {entry.crc32c}"
        )
    return entry.size


def write_objects(
    client: Any,
    store: BackupStore,
    bucket: str,
    actions: Iterable[tuple[ManifestEntry, Action]],
    backup_id: str,
    noun: str = "object",
    rate: float | None = None,
) -> None:
    """Copy what the plan creates or overwrites into `bucket`, as one stream over the copy workers.

    `actions` is consumed lazily (any iterable). A conflict is refused: given as a list, before
    anything is written; given as a stream, when it is met (the lifecycle refuses conflicts from
    the restore plan before it calls this). `rate`: the target's starting write rate (objects/s).
    """

    def refuse(conflicts: list[str]) -> Conflict:
        shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        return Conflict(
            f"{len(conflicts)} {noun}(s) in gs://{bucket} differ from backup {backup_id} "
            f"and overwrite was not asked for: {shown}"
        )

    if isinstance(actions, Sequence):
        conflicts = [e.name for e, a in actions if a == "conflict"]
        if conflicts:
            raise refuse(conflicts)

    def wanted() -> Iterable[ManifestEntry]:
        for entry, action in actions:
            if action == "conflict":
                raise refuse([entry.name])
            if action in ("create", "overwrite"):
                yield entry

    target = client.bucket(bucket)
    ramp_for(bucket, rate)
    run_stream(lambda group: _restore_group(client, target, store, group), batched(wanted(), BATCH_CALLS))


def restore_batch(client: Any, store: BackupStore, bucket: str, entries: list[ManifestEntry]) -> int:
    """Copy `entries` from the pool to `bucket` (on the shared copy workers); the bytes copied."""
    target = client.bucket(bucket)
    return sum(
        run_all(
            lambda group: _restore_group(client, target, store, group), batch_groups(entries, copy_workers())
        )
    )


def _restore_group(client: Any, target: Any, store: BackupStore, entries: list[ManifestEntry]) -> int:
    """Restore `entries`, the small ones copied in one batch request first; the bytes copied."""
    copies = [(Copy(store.bucket_name, e.stored_key, None, e.name), e.size) for e in entries]
    made = made_in_batches(client, target, copies)
    return sum(_restore_object(target, store, e, made.get(e.name)) for e in entries)


def remove_bucket(client: Any, bucket: str) -> None:
    """Delete a scratch bucket and everything in it (nothing when it does not exist): a page of
    names at a time (the first ones left, listed again after each page is deleted: no paging over
    a listing that changes, never the whole bucket in memory), deleted in batch requests."""
    with converted_errors(f"removing scratch bucket gs://{bucket}"):
        found = client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
        if found is None:
            return
        ramp, store = ramp_for(bucket), ObjectStore(client, bucket)

        def delete(group: list[str]) -> list[tuple[str, str, str]]:
            return [r for part in ramp.batches(group) for r in store.delete_many(part, ramp.retry)]

        while names := [
            b.name for b in client.list_blobs(bucket, max_results=PAGE, timeout=TIMEOUT, retry=RETRY)
        ]:
            outcome = DeleteOutcome.of(
                r for done in run_all(delete, batch_groups(names, copy_workers())) for r in done
            )
            left = [
                *outcome.failed.values(),
                *(f"{k}: kept by the bucket ({why})" for k, why in outcome.kept.items()),
            ]
            if left:
                raise Unavailable(f"{len(left)} object(s) not deleted, first: {left[0]}")
        found.delete(timeout=TIMEOUT)


PAGE = 1000  # names listed, then deleted, at a time
