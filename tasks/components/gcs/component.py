"""Cloud Storage component: back up buckets into the generation-keyed pool, validate, restore.

All bytes move server-side (rewrite), from the source bucket into the backup bucket and back; the
worker only lists and checks. See tasks/components/gcs/plan.py for the layout and the incremental rules, and
tasks/components/gcs/copy.py for the copies (one pool of copy workers, a write ramp per destination bucket).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.names import check_bucket
from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from tasks.catalog import locks, points
from tasks.components.gcs import resume as gcs_resume
from tasks.components.gcs.copy import copy_batch, remove_bucket  # the copy path
from tasks.components.gcs.options import NOUN, PART, GcsOptions
from tasks.components.gcs.plan import (
    Action,
    PlanCounts,
    SourceObject,
    in_scope,
    matching,
    plan_backup,
    source_object,
)
from tasks.components.gcs.restore import (
    decide,
    delete_objects,
    plan_bucket,
    restore_in_units,
    target_listing,
    verify_bucket,
)
from tasks.engine import units
from tasks.engine.protocol import BackupPlan as LifecyclePlan
from tasks.engine.protocol import (
    Context,
    LifecycleMethods,
    RestorePlan,
    RestoreRequest,
    StoredEntries,
)
from tasks.storage import shared_limit
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors
from tasks.storage.object_lock import extend_retention
from tasks.storage.parallel import growing_batches
from tasks.storage.spool import EntrySpool

NAME = "gcs"
BATCH_SIZE = 1000


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


class GcsComponent(LifecycleMethods):
    """Cloud Storage buckets: source = bucket name; a unit = a batch of objects to copy."""

    name = NAME
    noun, part = NOUN, PART
    Options = GcsOptions
    streams_entries = True  # buckets of millions of objects: manifests are streamed, never loaded

    def sources(self, settings: BackstopSettings) -> list[str]:
        return list(settings.gcs_sources)

    def scope(self, options: Any) -> list[str] | None:
        """A backup with `--prefix` holds those prefixes of the bucket only (an empty prefix: all of it)."""
        prefixes = options.prefixes or []
        return None if not prefixes or "" in prefixes else sorted(set(prefixes))

    def within(self, name: str, scope: str) -> bool:
        """An object, prefix or glob `only` names lies under a backed-up prefix."""
        return name.startswith(scope)

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        return check_bucket(source.removeprefix("gs://"))

    check_target = check_source

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> LifecyclePlan:
        """A streaming plan: the units (batches to copy) come out as the listing and the previous
        backup's entries are merged; reused entries go to the spool the lifecycle commits from."""
        bucket, prefixes = manifest.source, ctx.options.prefixes
        objects = list_source(storage_client(ctx.settings.project), bucket, prefixes)
        # What the plan reads of the backup bucket is read while the listing's first page comes.
        reads = ThreadPoolExecutor(3)
        got_previous = reads.submit(points.previous_backup, ctx.store, NAME, bucket)
        got_unfinished = reads.submit(gcs_resume.copied_by_unfinished, ctx.store, manifest)
        got_retention = reads.submit(locks.retention_at_write, ctx.store, manifest)
        try:
            try:
                first = next(objects, None)  # an unknown bucket fails here, before any unit
            finally:
                reads.shutdown()
            previous, retention = got_previous.result(), got_retention.result()
            unfinished, resumed = got_unfinished.result()
        except BaseException:
            if got_unfinished.exception() is None:
                got_unfinished.result()[0].close()
            raise
        kept, counts = EntrySpool(), PlanCounts()
        listing = itertools.chain([first] if first else [], objects)
        earlier = heapq.merge(
            ctx.store.iter_entries(previous) if previous else iter(()), unfinished, key=lambda e: e.name
        )
        shared = units.spreads(ctx)
        if shared:  # one write rate for the pool bucket across the cluster's workers
            shared_limit.prepare(ctx.store.bucket_name, ctx.settings.gcs_write_rate)
        if (
            resumed
            and retention
            and extend_retention(ctx.store, (e.stored_key for e in unfinished), retention[1])
        ):
            previous_locked = None  # the commit then locks every carried entry itself
        else:
            previous_locked = previous
        says = [f"unchanged objects reused from backup {previous.backup_id}"] if previous else []
        says += [f"copies of unfinished run(s) {', '.join(resumed)} reused"] if resumed else []
        return LifecyclePlan(
            units=(
                gcs_resume.save_work(ctx.store, manifest, number, batch, shared)
                for number, batch in enumerate(
                    plan_backup(listing, bucket, earlier, kept.add, counts, growing_batches(BATCH_SIZE)), 1
                )
            ),
            carried=kept,
            state={"resumed_from": resumed} if resumed else {},
            private=(counts, unfinished),
            retained_at_write=True,
            carried_from=previous_locked,
            describe=f"gs://{bucket}: listing and copying in batches"
            + (f" ({'; '.join(says)})" if says else ""),
        )

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: gcs_resume.WorkRef
    ) -> tuple[list[ManifestEntry] | StoredEntries, dict[str, Any]]:
        """Copy the batch of one unit (on a Dask cluster, the key of its work file: a few bytes)."""
        batch = gcs_resume.load_work(ctx.store, unit)
        client = storage_client(ctx.settings.project)
        entries = copy_batch(
            client,
            manifest.source,
            batch,
            ctx.store,
            rate=ctx.settings.gcs_write_rate,
            shared=unit.shared,
            retention=locks.retention_at_write(ctx.store, manifest),
        )
        # The checkpoint lets a later run resume this one; from another process the entries go back
        # as its key (a few bytes), on the flow's threads as they are.
        key = gcs_resume.save(ctx.store, manifest, entries)
        listed = {obj.name: obj.generation for obj, _ in batch}
        state = {"changed_during_backup": sum(listed[e.name] != e.generation for e in entries)}
        if unit.items is not None or not key:
            return entries, state
        return StoredEntries(key, len(entries)), state

    def finish(
        self, ctx: Context, manifest: BackupManifest, plan: LifecyclePlan, entries: Any
    ) -> dict[str, Any]:
        counts, unfinished = plan.private
        unfinished.close()
        shared_limit.stop(ctx.store.bucket_name)
        gcs_resume.forget_finished(ctx.store, manifest)
        return source_state(manifest.source, ctx.options.prefixes, counts, entries)

    def discard(self, ctx: Context, manifest: BackupManifest, entries: Any) -> None:
        """A failed run: its keeper of the pool bucket's shared write rate stops (its copies stay for
        the next run to resume, and prune sweeps what nothing references)."""
        shared_limit.stop(ctx.store.bucket_name)

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
        wanted = matching(ctx.store.iter_entries(manifest), request.only, request.exclude)
        prefixes = manifest.source_state.get("prefixes") or None
        scope = (
            (lambda name: in_scope(name, prefixes, request.only, request.exclude)) if request.exact else None
        )
        planned = plan_bucket(storage_client(ctx.settings.project), bucket, wanted, scope)
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
            wanted = [planned.creates] + ([planned.replaces] if request.overwrite else [])
            entries = (entry for spool in wanted for entry in spool)
            # Units on the settings' task runner (a Dask cluster spreads them over its workers).
            restore_in_units(ctx, bucket, entries, f"gcs-restore-{bucket}")
            if request.overwrite:
                delete_objects(client, bucket, planned.deletes)
        finally:
            planned.close()

    def verify_restored(
        self,
        ctx: Context,
        manifest: BackupManifest,
        target: str,
        only: list[str] | None,
        exclude: list[str] | None = None,
    ) -> list[str]:
        bucket = target.removeprefix("gs://")
        wanted = matching(ctx.store.iter_entries(manifest), only, exclude)
        return verify_bucket(storage_client(ctx.settings.project), bucket, wanted)

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        base = manifest.source[: 63 - len(suffix) - 8].rstrip("-._")
        return check_bucket(f"{base}-drill-{suffix}".lower())

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        remove_bucket(storage_client(settings.project), target.removeprefix("gs://"))


def verify_objects(client: Any, bucket: str, entries: list[ManifestEntry]) -> list[str]:
    """Differences between `bucket` and the entries (missing objects, other size, crc32c or metadata)."""
    return verify_bucket(client, bucket, entries)


COMPONENT = GcsComponent()
