"""Work files and checkpoints of a Cloud Storage backup: small references for the copy tasks, and
resuming a backup that died (the copies it made are reused, not made again).

When the copies run on a Dask cluster, the plan writes each batch of objects to copy as a work
file under `_resume/gcs/<bucket>/<backup_id>/work-<n>.json`; a copy task gets only its key
(`WorkRef`), so what travels to a worker on another machine is a few bytes, never an object list.
On the flow's own threads the batch is handed over as it is. Each finished batch writes a checkpoint (the entries it copied) beside it
(`done-<hash>.json`). A later backup of the same bucket reuses the copies of runs
that are still marked in progress (their marker, or its hourly heartbeat, is younger than 24 hours): while any run of the
bucket is in progress, prune does not sweep its pool, so those copies are still there, and once
the new backup commits its manifest references them. Checkpoints of runs no longer in progress
(committed, or expired) are removed by the next backup; a first backup of 100 million objects
that dies at 90 % thus loses minutes, not a day.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from backstop.core.errors import BackstopError
from backstop.core.manifest import BackupManifest, ManifestEntry, chunk_file, entries_of
from tasks.components.gcs.plan import SourceObject
from tasks.storage.bucket import RESUME_PREFIX, BackupStore
from tasks.storage.parallel import at_once
from tasks.storage.spool import EntrySpool

Item = tuple[SourceObject, str]  # an object to copy, and its pool key
log = logging.getLogger(__name__)


def _prefix(component: str, source: str) -> str:
    return f"{RESUME_PREFIX}{component}/{source}/"


@dataclass(frozen=True)
class WorkRef:
    """One copy task's work: the key of its work file, and what it holds (for logs and progress)."""

    key: str
    objects: int
    bytes: int
    shared: bool = False  # writes take the pool bucket's rate limit shared by every worker
    items: tuple[Item, ...] | None = None  # the batch itself when its copy runs in this process


def save_work(
    store: BackupStore, manifest: BackupManifest, number: int, batch: list[Item], shared: bool = False
) -> WorkRef:
    """One batch of objects to copy (source object, pool key): written as a work file when it goes
    to another process (`shared`: a Dask cluster), else handed over as it is."""
    size = sum(obj.size for obj, _ in batch)
    if not shared:  # the flow's threads: nothing travels, no work file to write and read back
        return WorkRef("", len(batch), size, items=tuple(batch))
    key = f"{_prefix(manifest.component, manifest.source)}{manifest.backup_id}/work-{number:06d}.json"
    # SourceObject's fields in order, as load_work reads them (dataclasses.astuple copies deeply: 7x slower)
    rows = [
        [o.name, o.generation, o.size, o.crc32c, o.md5, o.properties, o.metadata, pool] for o, pool in batch
    ]
    store.put_bytes(key, json.dumps(rows, separators=(",", ":")).encode(), content_type="application/json")
    return WorkRef(key, len(batch), size, shared)


def load_work(store: BackupStore, ref: WorkRef) -> list[Item]:
    """The batch of a unit: its own, or the one its work file holds."""
    if ref.items is not None:
        return list(ref.items)
    rows = json.loads(store.get_bytes(ref.key))
    return [
        (SourceObject(n, g, s, c, m, tuple(map(tuple, p)), tuple(map(tuple, d))), pool)
        for n, g, s, c, m, p, d, pool in rows
    ]


def save(store: BackupStore, manifest: BackupManifest, entries: list[ManifestEntry]) -> str | None:
    """Record what one batch copied (named by its first object: a retried batch overwrites it);
    returns its key (None when the batch took nothing)."""
    if not entries:
        return None
    first = hashlib.sha256(entries[0].name.encode()).hexdigest()[:24]
    key = f"{_prefix(manifest.component, manifest.source)}{manifest.backup_id}/done-{first}.json"
    _, data = chunk_file([(e.name, e.size, e.model_dump_json()) for e in entries])
    store.put_bytes(key, data, content_type="application/json")
    return key


def copied_by_unfinished(store: BackupStore, manifest: BackupManifest) -> tuple[EntrySpool, list[str]]:
    """The entries copied by other runs of this source still in progress, and their backup ids."""
    spool, used = EntrySpool(), []
    prefix = _prefix(manifest.component, manifest.source)
    for backup_id in store.in_progress(manifest.component, manifest.source, other_than=manifest.backup_id):
        for key in sorted(store.list(f"{prefix}{backup_id}/done-")):
            try:
                spool.add(entries_of(store.get_bytes(key), store.where(key)))
            except BackstopError as exc:  # a damaged checkpoint: its objects are copied again
                log.warning("checkpoint %s not used: %s", store.where(key), str(exc).splitlines()[0])
                continue
            if backup_id not in used:
                used.append(backup_id)
    return spool, used


def forget_finished(store: BackupStore, manifest: BackupManifest) -> None:
    """Remove checkpoints of runs no longer in progress (best effort: a retention policy may keep them)."""
    prefix = _prefix(manifest.component, manifest.source)
    others, checkpoints = at_once(
        lambda: store.in_progress(manifest.component, manifest.source, other_than=manifest.backup_id),
        lambda: store.list(prefix),
    )
    running = {*others, manifest.backup_id}
    stale = [k for k in checkpoints if k[len(prefix) :].split("/", 1)[0] not in running]
    if stale:
        outcome = store.delete_objects(stale)
        if outcome.failed or outcome.kept:
            log.info("%d old checkpoint(s) under %s kept", len(outcome.failed) + len(outcome.kept), prefix)
