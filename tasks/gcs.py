"""Cloud Storage component: back up buckets into the generation-keyed pool, validate, restore.

All bytes move server-side (rewrite), from the source bucket into the backup bucket and back; the
worker only lists and checks. See tasks/gcs_plan.py for the layout and the incremental rules, and
tasks/gcs_copy.py for the copies (one pool of copy workers, a write ramp per destination bucket).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from pydantic import BaseModel, ConfigDict, Field

from backstop.core.errors import NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry, select
from backstop.core.names import check_bucket
from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from tasks import catalog_io
from tasks.component import BackupPlan as LifecyclePlan
from tasks.component import Context, LifecycleMethods, RestorePlan, RestoreRequest
from tasks.gcs_copy import copy_batch, remove_bucket, write_objects  # the copy path
from tasks.gcs_plan import (
    KEPT_PROPERTIES,
    Action,
    BackupPlan,
    SourceObject,
    batches,
    plan_backup,
    plan_restore,
    pool_prefix,
    select_entries,
)
from tasks.store import RETRY, TIMEOUT, BackupStore, converted_errors

NAME = "gcs"
BATCH_SIZE = 1000

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


def previous_backup(store: BackupStore, bucket: str) -> BackupManifest | None:
    """The newest backup of `bucket` (validated or not): its header found in the catalog index,
    then only its manifest read."""
    return catalog_io.first_loadable(
        store, select(store.list_headers(NAME, bucket, on_damaged=lambda _: None))
    )


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

    def sources(self, settings: BackstopSettings) -> list[str]:
        return list(settings.gcs_sources)

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        return check_bucket(source.removeprefix("gs://"))

    check_target = check_source

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> LifecyclePlan:
        prefixes = ctx.options.prefixes
        plan_ = plan(storage_client(ctx.settings.project), ctx.store, manifest.source, prefixes)
        return LifecyclePlan(
            units=batches(plan_.to_copy, BATCH_SIZE),
            carried=list(plan_.reused),
            private=plan_,
            describe=(
                f"gs://{manifest.source}: {len(plan_.to_copy) + len(plan_.reused)} objects, "
                f"{len(plan_.to_copy)} to copy ({plan_.copy_bytes} bytes), {len(plan_.reused)} unchanged"
            ),
        )

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: list[tuple[SourceObject, str]]
    ) -> tuple[list[ManifestEntry], dict[str, Any]]:
        client = storage_client(ctx.settings.project)
        return copy_batch(client, manifest.source, unit, ctx.store, rate=ctx.settings.gcs_write_rate), {}

    def finish(
        self, ctx: Context, manifest: BackupManifest, plan: LifecyclePlan, entries: list[ManifestEntry]
    ) -> dict[str, Any]:
        return source_state(manifest.source, ctx.options.prefixes, plan.private, entries)

    def check(
        self, ctx: Context, manifest: BackupManifest, sample_percent: float, damaged: set[str]
    ) -> list[str]:
        state = manifest.source_state
        if "copied" in state:
            expected = state["copied"] + state["reused"] - state.get("deleted_during_backup", 0)
            if expected != len(manifest.entries):
                return [f"manifest lists {len(manifest.entries)} objects, the backup took {expected}"]
        return []

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        bucket = request.target or manifest.source
        chosen = select_entries(manifest.entries, request.only)
        if request.only and not chosen:
            raise NotFound(f"nothing in backup {manifest.backup_id} matches {', '.join(request.only)}")
        actions = plan_objects(storage_client(ctx.settings.project), bucket, chosen, overwrite=True)
        change = {"create": "create", "overwrite": "replace", "unchanged": "unchanged"}
        return RestorePlan(
            target=f"gs://{bucket}",
            into_original=bucket == manifest.source,
            actions=[{"name": e.name, "change": change[a], "bytes": e.size} for e, a in actions],
            private=(bucket, actions),
        )

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        bucket, actions = plan.private
        client = storage_client(ctx.settings.project)
        ensure_target_bucket(client, bucket, ctx.settings.location)
        wanted = [(e, a) for e, a in actions if a == "create" or (a == "overwrite" and request.overwrite)]
        write_objects(client, ctx.store, bucket, wanted, manifest.backup_id, rate=ctx.settings.gcs_write_rate)

    def verify_restored(
        self, ctx: Context, manifest: BackupManifest, target: str, only: list[str] | None
    ) -> list[str]:
        bucket = target.removeprefix("gs://")
        return verify_objects(
            storage_client(ctx.settings.project), bucket, select_entries(manifest.entries, only)
        )

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        base = manifest.source[: 63 - len(suffix) - 8].rstrip("-._")
        return check_bucket(f"{base}-drill-{suffix}".lower())

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        remove_bucket(storage_client(settings.project), target.removeprefix("gs://"))


def verify_objects(client: Any, bucket: str, entries: list[ManifestEntry]) -> list[str]:
    """Differences between `bucket` and the entries (missing objects, other size or crc32c)."""
    there = existing_objects(client, bucket, {e.name for e in entries})
    problems = []
    for entry in entries:
        got = there.get(entry.name)
        if got is None:
            problems.append(f"missing in gs://{bucket}: {entry.name}")
        elif got != (entry.size, entry.crc32c):
            problems.append(
                f"differs in gs://{bucket}: {entry.name} {got} vs backup {(entry.size, entry.crc32c)}"
            )
    return problems


COMPONENT = GcsComponent()
