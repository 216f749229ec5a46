"""Restoring Cloud Storage objects from a backup, streamed: plan against the target, verify after.

A backup of millions of objects is never held whole: its entries are streamed from the manifest
(a chunk at a time), the target bucket's listing is spooled to disk once, and each batch of
entries is decided against it. What is to be written is spooled too; the plan keeps only counts,
the items a person must see (replacements, deletes, blocked ones) and a bounded sample of the rest.

An object is "unchanged" only when its bytes (size, crc32c) and the metadata the backup kept
(content type and the other kept properties, custom metadata) are the backup's. An exact restore
also plans a "delete" for every object of the restored scope (the backed-up prefixes, narrowed by
`only`) that the backup does not hold: what appeared after it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import PermissionDenied
from backstop.core.manifest import ManifestEntry, chunk_file, entries_of
from blocks.clients import storage_client
from tasks.components.gcs.copy import restore_batch
from tasks.components.gcs.plan import (
    Action,
    kept_metadata,
    listed_metadata,
    plan_restore,
    same_object,
)
from tasks.engine import units
from tasks.engine.protocol import Context
from tasks.storage import shared_limit
from tasks.storage.bucket import BackupStore
from tasks.storage.copies import ramp_for, run_stream
from tasks.storage.google_api import BATCH_CALLS, RETRY, TIMEOUT, converted_errors
from tasks.storage.objects import ObjectStore
from tasks.storage.parallel import batched, growing
from tasks.storage.spool import EntrySpool, KeySpool

BATCH = 5000  # entries decided at a time
SHOWN = 1000  # creates / unchanged listed one by one in a plan (all are counted)
CHANGE = {"create": "create", "overwrite": "replace", "unchanged": "unchanged"}
Scope = Callable[[str], bool]  # object name -> in the scope an exact restore deletes in


def target_listing(client: Any, bucket: str) -> KeySpool:
    """What `bucket` holds, name -> (size, crc32c, kept metadata as JSON), spooled to disk (empty
    when it does not exist)."""
    spool = KeySpool()
    try:
        with converted_errors(f"target bucket gs://{bucket}"):
            if client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY) is not None:
                listing = client.list_blobs(bucket, timeout=TIMEOUT, retry=RETRY)
                spool.add((b.name, int(b.size or 0), b.crc32c, listed_metadata(b)) for b in listing)
    except BaseException:
        spool.close()
        raise
    return spool


def decide(
    there: KeySpool, entries: Iterable[ManifestEntry], overwrite: bool
) -> Iterator[tuple[ManifestEntry, Action]]:
    """Per entry, in batches: create it, leave it, overwrite it (asked to) or conflict."""
    for batch in batched(entries, BATCH):
        yield from plan_restore(batch, there.lookup([e.name for e in batch]), overwrite)


@dataclass
class Planned:
    """A streamed restore plan: what to write and delete (spooled), counts, the actions worth listing."""

    creates: EntrySpool = field(default_factory=EntrySpool)
    replaces: EntrySpool = field(default_factory=EntrySpool)
    deletes: KeySpool = field(default_factory=KeySpool)
    counts: Counter[str] = field(default_factory=Counter)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def close(self) -> None:
        self.creates.close()
        self.replaces.close()
        self.deletes.close()


def plan_bucket(
    client: Any, bucket: str, entries: Iterable[ManifestEntry], scope: Scope | None = None
) -> Planned:
    """Decide every entry against `bucket`'s current content (see the module docstring); with
    `scope` (an exact restore), also what `bucket` holds in scope that the entries do not."""
    planned = Planned()
    try:
        with target_listing(client, bucket) as there, KeySpool() as wanted:
            for batch in batched(decide(there, entries, overwrite=True), BATCH):
                planned.creates.add(e for e, a in batch if a == "create")
                planned.replaces.add(e for e, a in batch if a == "overwrite")
                if scope is not None:
                    wanted.add((e.name, 0, None, None) for e, _ in batch)
                for entry, action in batch:
                    change = CHANGE[action]
                    planned.counts[change] += 1
                    if change == "replace" or planned.counts[change] <= SHOWN:
                        planned.actions.append({"name": entry.name, "change": change, "bytes": entry.size})
            if scope is not None:
                _plan_deletes(planned, there, wanted, scope)
    except BaseException:
        planned.close()
        raise
    return planned


def _plan_deletes(planned: Planned, there: KeySpool, wanted: KeySpool, scope: Scope) -> None:
    """A "delete" per object of the target in scope that the backup does not hold (folder markers,
    empty 'x/' objects a backup never takes, are left alone)."""
    for batch in batched(there.items(), BATCH):
        held = wanted.lookup([name for name, _ in batch])
        extra = [
            (name, info)
            for name, info in batch
            if name not in held and scope(name) and not (name.endswith("/") and info[0] == 0)
        ]
        planned.deletes.add((name, info[0], info[1], None) for name, info in extra)
        planned.counts["delete"] += len(extra)
        planned.actions += [
            {"name": name, "change": "delete", "bytes": info[0], "why": "not in the backup"}
            for name, info in extra
        ]


def delete_objects(client: Any, bucket: str, deletes: KeySpool) -> None:
    """Delete the objects an exact restore planned to delete from `bucket` (one already gone is
    fine), up to BATCH_CALLS in a batch request as prune does, each delete a write on the bucket's
    ramp (`BucketRamp.batches`: a tenth of a second of its rate a request, as copies go). One the
    bucket keeps (a hold, a retention policy) fails the restore, naming it; one that failed is sent
    again alone, its error raised."""
    store, ramp = ObjectStore(client, bucket), ramp_for(bucket)

    def delete_alone(name: str) -> None:
        with converted_errors(f"deleting gs://{bucket}/{name}"):
            try:
                store.bucket.blob(name).delete(timeout=TIMEOUT, retry=ramp.retry)
            except gexc.NotFound:
                return

    def delete(names: list[str]) -> None:
        for part in ramp.batches(names):
            for name, outcome, why in store.delete_many(part, ramp.retry):
                if outcome == "kept":
                    raise PermissionDenied(f"deleting gs://{bucket}/{name}: kept by the bucket ({why})")
                if outcome == "failed":
                    delete_alone(name)

    run_stream(delete, batched((name for name, _ in deletes.items()), BATCH_CALLS))


def verify_bucket(client: Any, bucket: str, entries: Iterable[ManifestEntry]) -> list[str]:
    """Differences between `bucket` and the entries: missing objects, other size or crc32c, other
    metadata (content type, the other kept properties, custom metadata) than the backup kept."""
    problems: list[str] = []
    with target_listing(client, bucket) as there:
        for batch in batched(entries, BATCH):
            held = there.lookup([e.name for e in batch])
            for entry in batch:
                got = held.get(entry.name)
                if got is None:
                    problems.append(f"missing in gs://{bucket}: {entry.name}")
                elif got[:2] != (entry.size, entry.crc32c):
                    problems.append(
                        f"differs in gs://{bucket}: {entry.name} {got[:2]} vs backup {(entry.size, entry.crc32c)}"
                    )
                elif not same_object(entry, got):
                    problems.append(
                        f"metadata differs in gs://{bucket}: {entry.name} {got[2]} vs backup "
                        f"{kept_metadata(entry.metadata)}"
                    )
    return problems


# -- writing, in units ----------------------------------------------------------------------
WORK_PREFIX = "_resume/restore/gcs/"  # under _resume/: not a component's folder (tasks/catalog/index.py)
UNIT_SIZE = 1000  # objects in the first restore units (they grow with the work done)


@dataclass(frozen=True)
class RestoreWork:
    """One restore unit: the key of a work file (the entries to copy) and the target bucket; a few
    bytes to ship to a worker, never the object list."""

    key: str
    bucket: str
    objects: int
    bytes: int
    shared: bool = False  # writes take the bucket's rate limit shared by every worker
    entries: tuple[ManifestEntry, ...] | None = None  # on threads: the batch itself, no work file


def save_restore_work(
    store: BackupStore, run: str, bucket: str, number: int, entries: list[ManifestEntry], shared: bool
) -> RestoreWork:
    """Write one batch of entries to restore as a work file of restore run `run`."""
    key = f"{WORK_PREFIX}{bucket}/{run}/work-{number:06d}.json"
    _, data = chunk_file([(e.name, e.size, e.model_dump_json()) for e in entries])
    store.put_bytes(key, data, content_type="application/json")
    return RestoreWork(key, bucket, len(entries), sum(e.size for e in entries), shared)


def restore_unit(ctx: Context, work: RestoreWork) -> tuple[int, int]:
    """Copy the entries of one work file from the pool into its bucket (on a worker: a thread here,
    or a Dask worker process); (objects, bytes) restored."""
    if work.entries is not None:
        entries = list(work.entries)
    else:
        entries = entries_of(ctx.store.get_bytes(work.key), ctx.store.where(work.key))
    client = storage_client(ctx.settings.project)
    ramp_for(work.bucket, ctx.settings.gcs_write_rate, work.shared)
    return len(entries), restore_batch(client, ctx.store, work.bucket, entries)


def restore_in_units(
    ctx: Context, bucket: str, entries: Iterable[ManifestEntry], label: str
) -> tuple[int, int]:
    """Restore `entries` into `bucket` as units on the settings' task runner (tasks/engine/units.py):
    batches that grow with the work done (a few hundred units for any size); (objects, bytes) restored.

    On a Dask cluster each batch is written to a work file in the backup bucket first (a worker
    gets its key) and removed after: the identity restoring then needs to create and delete objects
    under `_resume/restore/` there. On the flow's threads (or outside a flow) a batch is handed over
    in memory and the backup bucket is only read (a read-only restorer identity works)."""
    run = uuid.uuid4().hex[:12]
    written: list[str] = []
    total = [0, 0]
    shared = units.spreads(ctx)
    if shared:
        shared_limit.prepare(bucket, ctx.settings.gcs_write_rate)

    def save(batch: list[ManifestEntry]) -> RestoreWork:
        if not shared:  # threads of this process: nothing travels, the batch is the unit
            return RestoreWork("", bucket, len(batch), sum(e.size for e in batch), False, tuple(batch))
        work = save_restore_work(ctx.store, run, bucket, len(written) + 1, batch, shared)
        written.append(work.key)
        return work

    def works() -> Iterator[RestoreWork]:
        return (save(batch) for batch in growing(entries, UNIT_SIZE))

    def done(result: tuple[int, int]) -> None:
        total[0] += result[0]
        total[1] += result[1]

    try:
        units.fan_out(ctx, label, restore_unit, works(), done)
    finally:
        if shared:
            shared_limit.stop(bucket)
        if written:
            ctx.store.delete_objects(written)
    return total[0], total[1]
