"""Cloud Storage component: back up buckets into the generation-keyed pool, validate, restore.

All bytes move server-side (rewrite), from the source bucket into the backup bucket and back; the
worker only lists and checks. See tasks/gcs_plan.py for the layout and the incremental rules.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from google.api_core import exceptions as gexc
from pydantic import BaseModel, ConfigDict, Field

from backstop.core.errors import Conflict, NotFound, ValidationFailed
from backstop.core.manifest import BackupManifest, ManifestEntry, select
from backstop.core.names import check_bucket
from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from tasks import catalog_io, gcs_resume
from tasks.component import BackupPlan as LifecyclePlan
from tasks.component import Context, LifecycleMethods, RestorePlan, RestoreRequest
from tasks.gcs_plan import (
    KEPT_PROPERTIES,
    Action,
    PlanCounts,
    SourceObject,
    batches,
    entry_for,
    growing_batches,
    matching,
    plan_backup,
    pool_key,
)
from tasks.gcs_restore import decide, plan_bucket, target_listing, verify_bucket
from tasks.parallel import batched
from tasks.spool import EntrySpool
from tasks.store import RETRY, TIMEOUT, BackupStore, converted_errors, parallel_map

NAME = "gcs"
BATCH_SIZE = 1000
COPY_MAX_BYTES = 16 * 1024 * 1024  # above this, rewrite with tokens
WORKERS = 16

Progress = Callable[[int, int, int], None]  # (batch number, objects done, bytes done)


def list_source(client: Any, bucket: str, prefixes: list[str] | None = None) -> Iterator[SourceObject]:
    """Every live object of `bucket` (under `prefixes`) in name order, page by page, with
    generation, checksums and metadata. Overlapping prefixes list an object once."""
    check_bucket(bucket)
    with converted_errors(f"source bucket gs://{bucket}"):
        if client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY) is None:
            raise NotFound(f"source bucket gs://{bucket} does not exist")

    def listing(prefix: str) -> Iterator[SourceObject]:
        with converted_errors(f"listing source bucket gs://{bucket}"):
            for blob in client.list_blobs(bucket, prefix=prefix or None, timeout=TIMEOUT, retry=RETRY):
                yield source_object(blob)

    last = None
    for obj in heapq.merge(*(listing(p) for p in sorted(set(prefixes or [""]))), key=lambda o: o.name):
        if obj.name != last:
            yield obj
        last = obj.name


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
    """The newest backup of `bucket` not found invalid: its header found in the catalog index,
    then only that manifest read (its entries are streamed by the plan)."""
    headers = [
        h
        for h in select(store.list_headers(NAME, bucket, on_damaged=lambda _: None))
        if h.status != "invalid"
    ]
    return catalog_io.first_loadable(store, headers, where=lambda m: m.status != "invalid")


def source_state(bucket: str, prefixes: list[str] | None, counts: PlanCounts, entries: Any) -> dict[str, Any]:
    """What the backup captured; `entries` (a spool) may differ from the listing when objects
    changed meanwhile (units count those they took at a newer generation: `changed_during_backup`,
    added up by the lifecycle)."""
    listed = counts.copied + counts.reused
    taken = len(entries)
    return {
        "bucket": bucket,
        "prefixes": prefixes or [],
        "objects": taken,
        "bytes": entries.total_bytes,
        "copied": counts.copied,
        "copied_bytes": counts.copy_bytes,
        "reused": counts.reused,
        "placeholders_skipped": counts.placeholders,
        # Objects deleted while the backup ran (listed, gone when copied).
        "deleted_during_backup": listed - taken,
    }


# -- restore --------------------------------------------------------------------------------
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
    with target_listing(client, bucket) as there:
        return list(decide(there, entries, overwrite))


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


class GcsOptions(BaseModel):
    """Options of Cloud Storage backups."""

    model_config = ConfigDict(extra="forbid")

    prefixes: list[str] | None = Field(
        default=None,
        description="Back up only objects under these prefixes.",
        json_schema_extra={"flag": "prefix", "verbs": ["backup"]},
    )


class GcsComponent(LifecycleMethods):
    """Cloud Storage buckets: source = bucket name; a unit = a batch of objects to copy."""

    name = NAME
    noun = "bucket"
    part = "object"
    Options = GcsOptions
    streams_entries = True  # buckets of millions of objects: manifests are streamed, never loaded

    def sources(self, settings: BackstopSettings) -> list[str]:
        return list(settings.gcs_sources)

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        return check_bucket(source.removeprefix("gs://"))

    check_target = check_source

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> LifecyclePlan:
        """A streaming plan: the units (batches to copy) come out as the listing and the previous
        backup's entries are merged; reused entries go to the spool the lifecycle commits from."""
        bucket, prefixes = manifest.source, ctx.options.prefixes
        objects = list_source(storage_client(ctx.settings.project), bucket, prefixes)
        previous = previous_backup(ctx.store, bucket)
        unfinished, resumed = gcs_resume.copied_by_unfinished(ctx.store, manifest)
        kept, counts = EntrySpool(), PlanCounts()
        try:
            first = next(objects, None)  # an unknown bucket fails here, before any unit
        except BaseException:
            kept.close()
            unfinished.close()
            raise
        listing = itertools.chain([first] if first else [], objects)
        earlier = heapq.merge(
            ctx.store.iter_entries(previous) if previous else iter(()), unfinished, key=lambda e: e.name
        )
        says = [f"unchanged objects reused from backup {previous.backup_id}"] if previous else []
        says += [f"copies of unfinished run(s) {', '.join(resumed)} reused"] if resumed else []
        return LifecyclePlan(
            units=(
                gcs_resume.save_work(ctx.store, manifest, number, batch)
                for number, batch in enumerate(
                    plan_backup(listing, bucket, earlier, kept.add, counts, growing_batches(BATCH_SIZE)), 1
                )
            ),
            carried=kept,
            state={"resumed_from": resumed} if resumed else {},
            private=(counts, unfinished),
            describe=f"gs://{bucket}: listing and copying in batches"
            + (f" ({'; '.join(says)})" if says else ""),
        )

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: gcs_resume.WorkRef
    ) -> tuple[list[ManifestEntry], dict[str, Any]]:
        """Copy the batch of one work file (the unit is its key: a few bytes to ship to a worker)."""
        batch = gcs_resume.load_work(ctx.store, unit)
        entries = copy_batch(storage_client(ctx.settings.project), manifest.source, batch, ctx.store)
        gcs_resume.save(ctx.store, manifest, entries)  # a later run reuses these if this one dies
        listed = {obj.name: obj.generation for obj, _ in batch}
        return entries, {"changed_during_backup": sum(listed[e.name] != e.generation for e in entries)}

    def finish(
        self, ctx: Context, manifest: BackupManifest, plan: LifecyclePlan, entries: Any
    ) -> dict[str, Any]:
        counts, unfinished = plan.private
        unfinished.close()
        gcs_resume.forget_finished(ctx.store, manifest)
        return source_state(manifest.source, ctx.options.prefixes, counts, entries)

    def check(
        self, ctx: Context, manifest: BackupManifest, sample_percent: float, damaged: set[str]
    ) -> list[str]:
        state = manifest.source_state
        if "copied" in state:
            expected = state["copied"] + state["reused"] - state.get("deleted_during_backup", 0)
            if expected != manifest.entry_count:
                return [f"manifest lists {manifest.entry_count} objects, the backup took {expected}"]
        return []

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        bucket = request.target or manifest.source
        wanted = matching(ctx.store.iter_entries(manifest), request.only)
        planned = plan_bucket(storage_client(ctx.settings.project), bucket, wanted)
        if request.only and not planned.counts:
            planned.close()
            raise NotFound(f"nothing in backup {manifest.backup_id} matches {', '.join(request.only)}")
        return RestorePlan(
            target=f"gs://{bucket}",
            into_original=bucket == manifest.source,
            actions=planned.actions,
            done=dict(planned.counts),
            private=(bucket, planned),
        )

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        bucket, planned = plan.private
        client = storage_client(ctx.settings.project)
        try:
            ensure_target_bucket(client, bucket, ctx.settings.location)
            writes = [planned.creates, planned.replaces] if request.overwrite else [planned.creates]
            for spool in writes:
                for batch in batched(spool, BATCH_SIZE):
                    restore_batch(client, ctx.store, bucket, batch)
        finally:
            planned.close()

    def verify_restored(
        self, ctx: Context, manifest: BackupManifest, target: str, only: list[str] | None
    ) -> list[str]:
        bucket = target.removeprefix("gs://")
        wanted = matching(ctx.store.iter_entries(manifest), only)
        return verify_bucket(storage_client(ctx.settings.project), bucket, wanted)

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        base = manifest.source[: 63 - len(suffix) - 8].rstrip("-._")
        return check_bucket(f"{base}-drill-{suffix}".lower())

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        remove_bucket(storage_client(settings.project), target.removeprefix("gs://"))


def verify_objects(client: Any, bucket: str, entries: list[ManifestEntry]) -> list[str]:
    """Differences between `bucket` and the entries (missing objects, other size or crc32c)."""
    return verify_bucket(client, bucket, entries)


def remove_bucket(client: Any, bucket: str) -> None:
    """Delete a scratch bucket and everything in it (nothing when it does not exist)."""
    with converted_errors(f"removing scratch bucket gs://{bucket}"):
        found = client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
        if found is None:
            return
        blobs = list(client.list_blobs(bucket, timeout=TIMEOUT))
        parallel_map(lambda b: b.delete(timeout=TIMEOUT), blobs, WORKERS)
        found.delete(timeout=TIMEOUT)


COMPONENT = GcsComponent()
