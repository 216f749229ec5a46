"""Cloud Storage component: back up buckets into the generation-keyed pool, validate, restore.

All bytes move server-side (rewrite), from the source bucket into the backup bucket and back; the
worker only lists and checks. See tasks/gcs_plan.py for the layout and the incremental rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc

from backstop.errors import Conflict, NotFound, ValidationFailed
from backstop.manifest import BackupManifest, ManifestEntry, select
from backstop.names import check_bucket
from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from tasks import catalog
from tasks.component import RestoreReport
from tasks.gcs_plan import (
    KEPT_PROPERTIES,
    Action,
    BackupPlan,
    SourceObject,
    batches,
    entry_for,
    plan_backup,
    plan_restore,
    pool_key,
    pool_prefix,
    select_entries,
)
from tasks.store import RETRY, TIMEOUT, BackupStore, converted_errors, parallel_map

NAME = "gcs"
BATCH_SIZE = 1000
COPY_MAX_BYTES = 16 * 1024 * 1024  # above this, rewrite with tokens
WORKERS = 16

Progress = Callable[[int, int, int], None]  # (batch number, objects done, bytes done)


def list_source(client: Any, bucket: str, prefixes: list[str] | None = None) -> list[SourceObject]:
    """Every live object of `bucket` (under `prefixes`), with generation, checksums and metadata."""
    check_bucket(bucket)
    objects: list[SourceObject] = []
    with converted_errors(f"source bucket gs://{bucket}"):
        if client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY) is None:
            raise NotFound(f"source bucket gs://{bucket} does not exist")
        for prefix in prefixes or [""]:
            for blob in client.list_blobs(bucket, prefix=prefix or None, timeout=TIMEOUT, retry=RETRY):
                objects.append(source_object(blob))
    unique = {o.name: o for o in objects}  # overlapping prefixes list an object twice
    return sorted(unique.values(), key=lambda o: o.name)


def source_object(blob: Any) -> SourceObject:
    properties = tuple((p, getattr(blob, p)) for p in KEPT_PROPERTIES if getattr(blob, p, None))
    return SourceObject(
        name=blob.name,
        generation=int(blob.generation),
        size=int(blob.size or 0),
        crc32c=blob.crc32c,
        md5=blob.md5_hash,
        properties=properties,
        metadata=tuple(sorted((blob.metadata or {}).items())),
    )


def pooled_objects(store: BackupStore, bucket: str) -> dict[str, tuple[int, str | None]]:
    """What the pool holds for `bucket`: stored key -> (size, crc32c)."""
    return {key: (int(b.size or 0), b.crc32c) for key, b in store.list(pool_prefix(bucket)).items()}


def _server_copy(source: Any, obj: SourceObject, store: BackupStore, key: str) -> Any:
    """Copy one source generation into the pool, server-side.

    Small objects use the one-call copy; large ones, and any copy that must be encrypted with a
    KMS key, use rewrite with its resumption tokens (the path Google recommends for big objects).
    """
    src = source.blob(obj.name, generation=obj.generation)
    if obj.size <= COPY_MAX_BYTES and store.kms_key_name is None:
        return source.copy_blob(
            src, store.bucket, key, source_generation=obj.generation, timeout=TIMEOUT, retry=RETRY
        )
    return _rewrite(src, store.blob(key))


def _rewrite(src_blob: Any, dest_blob: Any) -> Any:
    """Server-side rewrite, following rewrite tokens for large objects."""
    token, _, _ = dest_blob.rewrite(src_blob, timeout=TIMEOUT, retry=RETRY)
    while token is not None:
        token, _, _ = dest_blob.rewrite(src_blob, token=token, timeout=TIMEOUT, retry=RETRY)
    return dest_blob


def copy_batch(
    client: Any, bucket: str, items: list[tuple[SourceObject, str]], store: BackupStore
) -> list[ManifestEntry]:
    """Copy one batch of source generations into the pool; verify each copy's crc32c."""
    source = client.bucket(bucket)

    def copy(item: tuple[SourceObject, str]) -> ManifestEntry | None:
        obj, key = item
        try:
            with converted_errors(f"copying gs://{bucket}/{obj.name}#{obj.generation} to {store.where(key)}"):
                dest = _server_copy(source, obj, store, key)
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
                dest = _server_copy(source, obj, store, key)
        if dest.crc32c != obj.crc32c or int(dest.size or 0) != obj.size:
            raise ValidationFailed(
                f"copy of gs://{bucket}/{obj.name} to {store.where(key)} has crc32c {dest.crc32c} / {dest.size} bytes, "
                f"source has {obj.crc32c} / {obj.size}"
            )
        return entry_for(obj, key)

    return [entry for entry in parallel_map(copy, items, WORKERS) if entry is not None]


def previous_backup(store: BackupStore, bucket: str) -> BackupManifest | None:
    found = select(store.list_manifests(NAME, bucket, on_damaged=lambda _: None))
    return found[0] if found else None


def plan(client: Any, store: BackupStore, bucket: str, prefixes: list[str] | None) -> BackupPlan:
    """List the source and the pool; decide what to copy."""
    objects = list_source(client, bucket, prefixes)
    return plan_backup(objects, bucket, previous_backup(store, bucket), pooled_objects(store, bucket))


def source_state(
    bucket: str, prefixes: list[str] | None, plan_: BackupPlan, entries: list[ManifestEntry]
) -> dict[str, Any]:
    """What the backup captured; `entries` may differ from the listing when objects changed meanwhile."""
    listed = len(plan_.to_copy) + len(plan_.reused)
    listed_generation = plan_.generations
    replaced = sum(1 for e in entries if listed_generation.get(e.name) != e.generation)
    return {
        "bucket": bucket,
        "prefixes": prefixes or [],
        "objects": len(entries),
        "bytes": sum(e.size for e in entries),
        "copied": len(plan_.to_copy),
        "copied_bytes": plan_.copy_bytes,
        "reused": len(plan_.reused),
        "placeholders_skipped": plan_.placeholders,
        # Objects overwritten (a newer generation was taken) or deleted while the backup ran.
        "changed_during_backup": replaced,
        "deleted_during_backup": listed - len(entries),
    }


# -- restore --------------------------------------------------------------------------------
def damaged_entries(store: BackupStore, bucket: str, entries: list[ManifestEntry]) -> dict[str, str]:
    """Entries whose pool copy is missing or no longer matches the manifest (one listing), by name."""
    pooled = pooled_objects(store, bucket)
    damaged = {}
    for entry in entries:
        held = pooled.get(entry.stored_key)
        if held is None:
            damaged[entry.name] = f"missing: {entry.name!r} ({store.where(entry.stored_key)})"
        elif held != (entry.size, entry.crc32c):
            damaged[entry.name] = (
                f"damaged: {entry.name!r} ({store.where(entry.stored_key)}) holds crc32c {held[1]} / {held[0]} "
                f"bytes, manifest says {entry.crc32c} / {entry.size}"
            )
    return damaged


def existing_objects(client: Any, bucket: str, names: set[str]) -> dict[str, tuple[int, str | None]]:
    with converted_errors(f"target bucket gs://{bucket}"):
        return {
            b.name: (int(b.size or 0), b.crc32c)
            for b in client.list_blobs(bucket, timeout=TIMEOUT, retry=RETRY)
            if b.name in names
        }


def ensure_target_bucket(client: Any, bucket: str, location: str | None) -> bool:
    """Create the target bucket if missing; True when created."""
    check_bucket(bucket)
    with converted_errors(f"target bucket gs://{bucket}"):
        if client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY) is not None:
            return False
        try:
            client.create_bucket(bucket, location=location, timeout=TIMEOUT)
        except gexc.Conflict:
            return False
        return True


def plan_objects(
    client: Any, bucket: str, entries: list[ManifestEntry], overwrite: bool
) -> list[tuple[ManifestEntry, Action]]:
    """Per entry, what restoring it into `bucket` does (a bucket that does not exist holds nothing)."""
    with converted_errors(f"target bucket gs://{bucket}"):
        exists = client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY) is not None
    existing = existing_objects(client, bucket, {e.name for e in entries}) if exists else {}
    return plan_restore(entries, existing, overwrite)


def write_objects(
    client: Any,
    store: BackupStore,
    bucket: str,
    actions: list[tuple[ManifestEntry, Action]],
    backup_id: str,
    noun: str = "object",
) -> None:
    """Refuse any conflict before writing anything, then copy what the plan creates or overwrites."""
    conflicts = [e.name for e, a in actions if a == "conflict"]
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        raise Conflict(
            f"{len(conflicts)} {noun}(s) in gs://{bucket} differ from backup {backup_id} "
            f"and overwrite was not asked for: {shown}"
        )
    for batch in batches([e for e, a in actions if a in ("create", "overwrite")], BATCH_SIZE):
        restore_batch(client, store, bucket, batch)


def restore_batch(client: Any, store: BackupStore, bucket: str, entries: list[ManifestEntry]) -> int:
    """Copy entries from the pool to `bucket`, with their properties and custom metadata."""
    target = client.bucket(bucket)

    def put(entry: ManifestEntry) -> int:
        dest = target.blob(entry.name)
        with converted_errors(f"restoring {store.where(entry.stored_key)} to gs://{bucket}/{entry.name}"):
            _rewrite(store.bucket.blob(entry.stored_key), dest)
            # The stored copy may carry an older generation's metadata (same bytes reused): patch
            # to exactly the backed-up properties; a None value removes a key in a JSON-API patch.
            wanted = {p: entry.metadata.get("properties", {}).get(p) for p in KEPT_PROPERTIES}
            custom = entry.metadata.get("custom", {})
            if any(getattr(dest, p, None) != v for p, v in wanted.items()) or (dest.metadata or {}) != custom:
                for prop, value in wanted.items():
                    setattr(dest, prop, value)
                dest.metadata = {k: None for k in dest.metadata or {}} | custom
                dest.patch(timeout=TIMEOUT, retry=RETRY)
        if dest.crc32c != entry.crc32c:
            raise ValidationFailed(
                f"restored gs://{bucket}/{entry.name} has crc32c {dest.crc32c}, backup says {entry.crc32c}"
            )
        return entry.size

    return sum(parallel_map(put, entries, WORKERS))


class GcsComponent:
    """Cloud Storage buckets: source = bucket name."""

    name = NAME

    def backup(
        self,
        settings: BackstopSettings,
        store: BackupStore,
        source: str,
        prefixes: list[str] | None = None,
        progress: Progress | None = None,
        **_: Any,
    ) -> BackupManifest:
        client = storage_client(settings.project)
        check_bucket(source)
        # Mark the run in progress before planning: prune does not sweep pool objects it may reuse.
        manifest = catalog.begin_backup(store, NAME, source, {"prefixes": prefixes or []})
        try:
            plan_ = plan(client, store, source, prefixes)
            entries = list(plan_.reused)
            done = 0
            for number, batch in enumerate(batches(plan_.to_copy, BATCH_SIZE), 1):
                entries += copy_batch(client, source, batch, store)
                done += sum(o.size for o, _ in batch)
                if progress:
                    progress(number, len(entries), done)
            return catalog.commit_backup(
                store, manifest, entries, source_state(source, prefixes, plan_, entries)
            )
        except BaseException:
            catalog.abandon_backup(store, manifest)
            raise

    def validate(
        self, settings: BackstopSettings, store: BackupStore, manifest: BackupManifest, sample_percent: float
    ) -> BackupManifest:
        problems, read_back = catalog.verify_stored(
            store, manifest, sample_percent, prefixes=[pool_prefix(manifest.source)]
        )
        state = manifest.source_state
        if "copied" in state:
            expected = state["copied"] + state["reused"] - state.get("deleted_during_backup", 0)
            if expected != len(manifest.entries):
                problems.append(f"manifest lists {len(manifest.entries)} objects, the backup took {expected}")
        return catalog.record_validation(store, manifest, problems, len(manifest.entries), read_back)

    def restore(
        self,
        settings: BackstopSettings,
        store: BackupStore,
        manifest: BackupManifest,
        target: str | None = None,
        only: list[str] | None = None,
        overwrite: bool = False,
        dry_run: bool = False,
        skip_damaged: bool = False,
    ) -> RestoreReport:
        started = time.monotonic()
        bucket = check_bucket(target or manifest.source)
        client = storage_client(settings.project)
        chosen = select_entries(manifest.entries, only)
        if only and not chosen:
            raise NotFound(f"nothing in backup {manifest.backup_id} matches {', '.join(only)}")
        # Refuse damaged data before writing anything: the pool copy must still match the manifest.
        damaged = damaged_entries(store, manifest.source, chosen)
        if (damaged or manifest.status == "invalid") and not skip_damaged and not dry_run:
            shown = ", ".join(list(damaged)[:5]) + (" ..." if len(damaged) > 5 else "")
            why = (
                f"{len(damaged)} stored object(s) are missing or damaged: {shown}"
                if damaged
                else "it failed validation"
            )
            raise ValidationFailed(
                f"backup {manifest.backup_id} of gs://{manifest.source} cannot be restored as is: {why} "
                "(restore from another backup, or skip the damaged objects)",
                list(damaged.values()),
            )
        chosen = [e for e in chosen if e.name not in damaged]
        actions = plan_objects(client, bucket, chosen, overwrite)
        report = RestoreReport(NAME, manifest.source, manifest.backup_id, f"gs://{bucket}", dry_run=dry_run)
        report.actions = [{"object": e.name, "action": a, "bytes": e.size} for e, a in actions]
        report.actions += [{"object": name, "action": "damaged: skipped", "bytes": 0} for name in damaged]
        report.conflicts = [e.name for e, a in actions if a == "conflict"]
        report.unchanged = sum(1 for _, a in actions if a == "unchanged")
        if dry_run:
            report.created = sum(1 for _, a in actions if a == "create")
            report.overwritten = sum(1 for _, a in actions if a == "overwrite")
            report.seconds = time.monotonic() - started
            return report
        ensure_target_bucket(client, bucket, settings.location)  # conflicts imply it exists: nothing made
        write_objects(client, store, bucket, actions, manifest.backup_id)
        report.created = sum(1 for _, a in actions if a == "create")
        report.overwritten = sum(1 for _, a in actions if a == "overwrite")
        report.seconds = time.monotonic() - started
        return report

    def verify_restored(
        self, settings: BackstopSettings, store: BackupStore, manifest: BackupManifest, target: str
    ) -> list[str]:
        bucket = target.removeprefix("gs://")
        client = storage_client(settings.project)
        there = existing_objects(client, bucket, {e.name for e in manifest.entries})
        problems = []
        for entry in manifest.entries:
            got = there.get(entry.name)
            if got is None:
                problems.append(f"missing in gs://{bucket}: {entry.name}")
            elif got != (entry.size, entry.crc32c):
                problems.append(
                    f"differs in gs://{bucket}: {entry.name} {got} vs backup {(entry.size, entry.crc32c)}"
                )
        return problems

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        base = manifest.source[: 63 - len(suffix) - 8].rstrip("-._")
        return check_bucket(f"{base}-drill-{suffix}".lower())

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        bucket = target.removeprefix("gs://")
        client = storage_client(settings.project)
        with converted_errors(f"removing scratch bucket gs://{bucket}"):
            found = client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
            if found is None:
                return
            blobs = list(client.list_blobs(bucket, timeout=TIMEOUT))
            parallel_map(lambda b: b.delete(timeout=TIMEOUT), blobs, WORKERS)
            found.delete(timeout=TIMEOUT)


COMPONENT = GcsComponent()
