"""Prune: apply the retention policy to the catalog, delete manifests first, then sweep.

Two phases, each safe to interrupt and re-run:
1. `remove_manifests`: delete the manifest of every backup the plan removes. From that moment the
   backup no longer exists for restore, validation or retention (a run without its manifest did
   not happen), and its data is orphaned. An interrupted prune never leaves a manifest pointing
   at missing data, because data is only deleted in phase 2.
2. `sweep`: re-read the manifests that remain (the catalog at sweep time is the truth) and delete
   what none of them references (mark and sweep):
   - per-backup data under `<component>/<source>/<yyyy>/<mm>/<dd>/<backup_id>/` is deleted when
     that folder holds no readable manifest, the backup is not in progress, and the folder is
     either one this prune just removed or older than the grace period (so the data of a backup
     that is still being written, before its manifest, is never taken);
   - shared data under `pool/<component>/<source>/` is deleted when no remaining manifest lists it
     as a stored_key. The pool sweep is skipped while a backup of the source is in progress (it
     may be reusing pool objects it has not yet recorded) or while a manifest is damaged (its
     references are unknown).
   The deletes run in batches (tasks/operations/deletes.py): as units on the settings' task runner
   inside a flow run, so a sweep of millions of objects spreads over a Dask cluster too.
Objects the bucket keeps (an object hold, the bucket retention policy) are reported as kept by
the bucket, with the reason, and are not failures; the rest of the sweep goes on. Before phase 1
prune moves the holds forward (tasks/catalog/holds.py): the newest validated backup of the source is held,
older ones are released. Re-running prune deletes what an interrupted run left.
With object retention (tasks/catalog/locks.py) prune first extends the lock of every kept backup
whose keep date moved later, never shortening one; a removed backup whose manifest is still
retained is not touched at all: the plan says until when (`retained`), and a prune after that
date removes it. Objects still retained are never sent a delete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from backstop.core.catalog_index import INDEXED_NAME, source_prefix
from backstop.core.errors import BackstopError, InvalidInput, NotFound, ValidationFailed
from backstop.core.manifest import MANIFEST_NAME, BackupManifest
from backstop.core.retention import (
    RetentionPlan,
    RetentionPolicy,
    apply_policy,
    orphaned_keys,
    ref_of,
)
from blocks.settings import BackstopSettings
from tasks.catalog import index
from tasks.catalog.holds import move_holds
from tasks.catalog.locks import extend_kept, manifest_retained_until
from tasks.engine import units
from tasks.engine.protocol import Context, component_parts
from tasks.operations.deletes import delete_listed, hold_reason
from tasks.storage.bucket import INPROGRESS_PREFIX, RESUME_PREFIX, BackupStore, run_of
from tasks.storage.parallel import Batches
from tasks.storage.spool import KeySpool

DEFAULT_GRACE_HOURS = 48.0


@dataclass
class PruneReport:
    """What one prune of one (component, source) did or, with dry_run, would do."""

    component: str
    source: str
    bucket: str
    dry_run: bool
    plan: RetentionPlan
    removed: list[str] = field(default_factory=list)
    deleted_objects: int = 0
    deleted_bytes: int = 0
    not_deleted: list[str] = field(default_factory=list)
    kept_by_bucket: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retained: dict[str, datetime] = field(default_factory=dict)  # removed by the plan, locked until

    @property
    def ok(self) -> bool:
        return not self.not_deleted

    def rows(self) -> list[dict[str, Any]]:
        rows = self.plan.rows()
        for row in rows:
            until = self.retained.get(row["backup_id"])
            if until is not None and row["decision"] == "remove":
                row["reason"] += f"; retained until {until.isoformat()}: removed by a prune after that"
        return rows

    def summary(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "source": self.source,
            "bucket": self.bucket,
            "dry_run": self.dry_run,
            "keep": len(self.plan.keep),
            "remove": len(self.plan.remove),
            "removed": self.removed,
            "deleted_objects": self.deleted_objects,
            "deleted_bytes": self.deleted_bytes,
            "not_deleted": self.not_deleted,
            "kept_by_bucket": self.kept_by_bucket,
            "retained": {b: until.isoformat() for b, until in sorted(self.retained.items())},
            "notes": self.notes,
        }


def _delete(
    store: BackupStore, blobs: dict[str, Any], now: datetime, report: PruneReport, batches: Batches
) -> None:
    """Delete `blobs` (key -> listed blob) in batches as `batches` runs them, into `report`."""
    deleted = delete_listed(store, blobs, now, batches)
    report.deleted_objects += deleted.objects
    report.deleted_bytes += deleted.bytes
    report.kept_by_bucket += deleted.kept
    report.not_deleted += deleted.failed


def plan_prune(
    store: BackupStore, component: str, source: str, policy: RetentionPolicy, now: datetime
) -> tuple[RetentionPlan, dict[str, BackupManifest], list[str]]:
    """The plan for one source, its manifests by id, and the damaged manifests found."""
    damaged: list[str] = []
    manifests = index.list_manifests(store, component, source, on_damaged=damaged.append)
    by_id = {m.backup_id: m for m in manifests if m.component == component}
    refs = [ref_of(m) for m in by_id.values()]
    return apply_policy(refs, policy, now, component_parts(component)), by_id, damaged


def remove_manifests(
    store: BackupStore,
    manifests: list[BackupManifest],
    report: PruneReport,
    release: Callable[[BackupManifest], None] | None = None,
) -> list[str]:
    """Phase 1: delete the manifests of removed backups. Returns the folders whose manifest is gone.

    `release` first frees what a backup holds outside the bucket (a Backup for GKE backup); when it
    fails, the backup is kept and reported, so no manifest is lost for data that still exists.
    """
    gone: list[str] = []
    for manifest in manifests:
        if release is not None:
            try:
                release(manifest)
            except BackstopError as exc:
                report.not_deleted.append(f"backup {manifest.backup_id} kept: {exc}")
                continue
        outcome = store.delete_objects([manifest.path])
        if outcome.failed:
            report.not_deleted += [f"backup {manifest.backup_id} kept: {p}" for p in outcome.failed.values()]
        elif outcome.kept:
            report.kept_by_bucket += [
                f"backup {manifest.backup_id} kept by the bucket: {store.where(k)} ({why})"
                for k, why in outcome.kept.items()
            ]
        else:
            report.removed.append(manifest.backup_id)
            gone.append(manifest.folder)
            _unindex(store, manifest, report)
            # the in-progress marker a writer without delete permission had to leave behind: with
            # its manifest gone it would read as a running backup (and stop this prune's pool sweep)
            store.clear_in_progress(manifest)
    return gone


def _unindex(store: BackupStore, manifest: BackupManifest, report: PruneReport) -> None:
    """Delete the catalog entries of a backup whose manifest is gone (a left-over entry names a
    missing manifest, which readers skip; `backstop catalog rebuild` does not bring it back)."""
    outcome = store.delete_objects(index.entry_keys(store, manifest))
    report.kept_by_bucket += [
        f"{store.where(k)}: kept by the bucket ({why})" for k, why in outcome.kept.items()
    ]
    report.not_deleted += list(outcome.failed.values())


def unindexed_manifests(
    store: BackupStore, listed: dict[str, Any], remaining: list[BackupManifest], damaged: list[str]
) -> list[BackupManifest]:
    """Manifests in a listing of the source folder that the catalog index did not list (a commit
    interrupted between the manifest and its index entry): their data must not be swept."""
    known = {m.path for m in remaining}
    found = []
    for key in sorted(k for k in listed if k.endswith("/" + MANIFEST_NAME) and k not in known):
        try:
            found.append(store.read_manifest(key))
        except NotFound:
            continue
        except ValidationFailed as exc:
            damaged.append(str(exc))
    return found


# Components whose manifests may reference another component's pool.
POOL_SHARERS: dict[str, tuple[str, ...]] = {"gcs": ("composer",)}


def sharer_manifests(store: BackupStore, component: str, damaged: list[str]) -> list[BackupManifest]:
    """Manifests of the components that may reference `component`'s pool."""
    return [
        m
        for other in POOL_SHARERS.get(component, ())
        for m in index.list_manifests(store, other, on_damaged=damaged.append)
    ]


def running_sharers(store: BackupStore, component: str) -> set[str]:
    """In-progress backups of the components that may reuse `component`'s pool objects (a marker
    left behind by a run that committed is not one: BackupStore.in_progress)."""
    return {backup_id for other in POOL_SHARERS.get(component, ()) for backup_id in store.in_progress(other)}


def finished_run_files(
    store: BackupStore, component: str, source: str, running: set[str], before: datetime, now: datetime
) -> dict[str, Any]:
    """The in-progress markers and resume checkpoints (tasks/components/gcs/resume.py) of this
    source's runs that are no longer in progress, written before `before`, that the bucket lets go
    of by `now`: key -> listed blob. A run cannot remove them where its account may not delete (the
    backup writer) or while the bucket's retention policy keeps them; those still kept wait for a
    later prune, unreported (they are no backup data)."""
    found = {}
    for folder in (INPROGRESS_PREFIX, RESUME_PREFIX):
        prefix = f"{folder}{component}/{source}/"
        for key, blob in store.list(prefix).items():
            run = run_of(key[len(prefix) :].split("/", 1)[0])
            created = blob.time_created
            if run not in running and created is not None and created < before and not hold_reason(blob, now):
                found[key] = blob
    return found


def sweep(
    store: BackupStore,
    component: str,
    source: str,
    now: datetime,
    report: PruneReport,
    just_removed: list[str] | None = None,
    grace_hours: float = DEFAULT_GRACE_HOURS,
    batches: Batches | None = None,
) -> None:
    """Phase 2: delete data no remaining manifest references (see the module docstring), in
    batches as `batches` runs them (default: here)."""
    batches = batches or Batches()
    damaged: list[str] = []
    remaining = [
        m
        for m in index.list_manifests(store, component, source, on_damaged=damaged.append)
        if m.component == component
    ]
    looked = datetime.now(UTC)  # a run that starts after this is not in `running`: its files stay
    running: set[str] = set(store.in_progress(component, source))
    listed = store.list(f"{component}/{source}/")
    extra = unindexed_manifests(store, listed, remaining, damaged)
    report.notes += [
        f"backup {m.backup_id} has no catalog entry (kept; run `backstop catalog rebuild`)" for m in extra
    ]
    remaining += extra
    # The stored keys of the remaining manifests, on disk: read once, for the folders and the pool.
    seen: set[str] = set()  # the chunks read (a chunk shared by several manifests is read once)
    with _referenced(store, remaining, damaged, seen) as referenced:
        orphans = orphaned_keys(
            listed, component, source, remaining, running, just_removed or [],
            now - timedelta(hours=grace_hours), referenced,
        )  # fmt: skip
        _delete(store, {key: listed[key] for key in orphans}, now, report, batches)
        before = min(now - timedelta(hours=grace_hours), looked)
        finished = finished_run_files(store, component, source, running, before, now)
        _delete(store, finished, now, report, batches)

        if damaged:
            report.notes.append(f"pool sweep skipped: {len(damaged)} damaged manifest(s) ({damaged[0]})")
            return
        if running:
            report.notes.append(f"pool sweep skipped: backup(s) in progress ({', '.join(sorted(running))})")
            return
        # The pool is listed page by page against the referenced keys: only what no manifest
        # references is kept in memory, to delete once nothing changed meanwhile.
        unreferenced = {
            b.name: b for b in store.iter_list(f"pool/{component}/{source}/") if b.name not in referenced
        }
    # A backup that began (or even committed) while we listed may use pool objects: look again.
    # Other components share the pool (Composer copies its environment bucket through it), so
    # their manifests and running backups count too.
    running = set(store.in_progress(component, source)) | running_sharers(store, component)
    later = index.list_manifests(store, component, source, on_damaged=damaged.append)
    later += sharer_manifests(store, component, damaged)
    # A chunk read above is not read again: what it references is not in `unreferenced`.
    with _referenced(store, later, damaged, seen) as referenced:
        pool = {key: blob for key, blob in unreferenced.items() if key not in referenced}
    if running or damaged:
        report.notes.append(
            "pool sweep skipped: a backup started or a manifest became unreadable during the sweep"
        )
        return
    _delete(store, pool, now, report, batches)


def _referenced(
    store: BackupStore, manifests: list[BackupManifest], damaged: list[str], seen: set[str]
) -> KeySpool:
    """The stored keys of `manifests`, streamed from their entries into a disk-backed set; a
    manifest whose chunks cannot be read goes to `damaged` (the pool sweep is then skipped). A chunk
    whose digest is in `seen` is not read (a chunk of unchanged entries that several manifests
    share, tasks/storage/manifests.py, is read once for all); those read are added to it."""
    spool = KeySpool()
    try:
        for manifest in manifests:
            try:
                spool.add((e.stored_key, e.size, None, None) for e in store.iter_stored(manifest, seen))
            except ValidationFailed as exc:
                damaged.append(str(exc))
    except BaseException:
        spool.close()
        raise
    return spool


def prune(
    store: BackupStore,
    component: str,
    source: str,
    policy: RetentionPolicy,
    now: datetime,
    dry_run: bool = False,
    grace_hours: float = DEFAULT_GRACE_HOURS,
    release: Callable[[BackupManifest], None] | None = None,
    settings: BackstopSettings | None = None,
) -> PruneReport:
    """Apply `policy` to the backups of `component`/`source` in `store`; delete what it removes.

    Args:
        store: the backup store (primary or secondary).
        component: component name, e.g. "gcs".
        source: source name within the component.
        policy: the retention policy of this source.
        now: the moment the plan is made.
        dry_run: only plan; delete nothing.
        grace_hours: manifest-less data of backups started less than this long ago is left alone
            (a backup may still be writing it), unless this prune just removed that backup.
        release: called for each removed backup before its manifest is deleted, to free what it
            holds outside the bucket (the component's `delete`, where it has one).
        settings: when given, inside a flow run the sweep's deletes run as units on the
            settings' task runner (tasks/engine/units.py); without, here.

    Returns:
        A PruneReport with the plan (keep / remove with reasons), what was deleted and what was not.
    """
    if grace_hours < 0:
        raise InvalidInput(f"prune: grace_hours must be >= 0, got {grace_hours}")
    plan, by_id, damaged = plan_prune(store, component, source, policy, now)
    report = PruneReport(component, source, store.bucket_name, dry_run, plan)
    report.notes += [f"damaged manifest left in place: {d}" for d in damaged]
    if store.hold_validated:
        holds = move_holds(
            store, component, source, list(by_id.values()), component_parts(component), dry_run
        )
        report.notes += holds.notes(dry_run)
        report.not_deleted += holds.problems
    locked = extend_kept(store, plan, by_id, policy, now, dry_run)
    report.notes += locked.notes(dry_run)
    report.not_deleted += [f"retention lock not extended: {p}" for p in locked.problems]
    removed = [by_id[b] for b in plan.remove_ids]
    if store.lock is not None:
        report.retained = still_retained(store, removed, now)
    if dry_run:
        return report
    removed = [m for m in removed if m.backup_id not in report.retained]
    gone = remove_manifests(store, removed, report, release)
    try:
        batches = (
            units.UnitBatches(Context(settings, store), "prune", f"prune-{component}-{source}")
            if settings
            else None
        )
        sweep(store, component, source, now, report, gone, grace_hours, batches)
    except BackstopError as exc:  # manifests are already gone: a re-run finishes the sweep
        report.not_deleted.append(
            f"sweep of {component}/{source} interrupted: {exc} (re-run prune to finish)"
        )
    return report


def still_retained(store: BackupStore, manifests: list[BackupManifest], now: datetime) -> dict[str, datetime]:
    """backup id -> retain-until of the removed backups whose manifest is still retained."""
    found = {}
    for manifest in manifests:
        until = manifest_retained_until(store, manifest)
        if until is not None and until > now:
            found[manifest.backup_id] = until
    return found


def sources_in(store: BackupStore, component: str | None = None) -> list[tuple[str, str]]:
    """Every (component, source) with at least one manifest (damaged ones included) in `store`."""
    groups = []
    for c, s in index.sources(store, component):  # folder names only: the pool is never listed
        indexed = [k for k in store.list(source_prefix(c, s)) if not k.endswith("/" + INDEXED_NAME)]
        if indexed or any(k.endswith("/" + MANIFEST_NAME) for k in store.list(f"{c}/{s}/")):
            groups.append((c, s))
    return groups
