"""Backups locked until their keep date: object retention on every object a backup references.

At commit (`lock_committed`) the data of the backup (its folder's objects and the pool objects its
entries name), its manifest chunks and update records, and then `manifest.json` get a retain-until
equal to the date the retention plan keeps the backup to, rounded up to the lock's step
(backstop/core/retention_lock.py). `manifest.json` is locked last, so its retain-until is a
watermark: every object of that backup is retained at least as long.

What is already retained that long is not patched again, so an incremental backup costs what it
changes, not what it holds: objects a backup's units create retained (`retention_at_write`: the
Cloud Storage copies carry it in the copy request), and the entries it carries over from the backup
before it (`Reuse.parent`) while that backup's watermark reaches as far (the step makes it reach
for every backup of a step). Prune (`extend_kept`) extends the lock of every kept backup whose keep date
moved later (a daily that became the monthly keeper) and never shortens one; a pool object shared by
several backups ends up with the latest date any of them needs, since each only extends it.
What is locked cannot be deleted or replaced by anyone, prune and a stolen writer key included,
until that date (with `object_retention: locked`, not even by a project owner).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from backstop.core.manifest import BackupManifest, ManifestEntry, utcnow
from backstop.core.retention import RetentionPlan, RetentionPolicy
from backstop.core.retention_lock import later, plan_until
from tasks.storage.bucket import BackupStore
from tasks.storage.copies import Retention
from tasks.storage.manifests import UPDATES_DIR
from tasks.storage.object_lock import extend_retention, retained_until, retention_enabled


def backup_keys(store: BackupStore, manifest: BackupManifest) -> Iterator[str]:
    """Every object `manifest` references, `manifest.json` last: its entries' stored objects (its
    folder's data and the pool), its chunks and its update records."""
    yield from (e.stored_key for e in store.iter_stored(manifest))
    yield from own_keys(store, manifest)
    yield manifest.path


def own_keys(store: BackupStore, manifest: BackupManifest) -> Iterator[str]:
    """The manifest's own objects besides `manifest.json`: its chunks and its update records."""
    yield from (manifest.folder + chunk.key for chunk in manifest.chunks)
    yield from sorted(store.list(manifest.folder + UPDATES_DIR))


def lock_backup(store: BackupStore, manifest: BackupManifest, until: datetime) -> list[str]:
    """Retain every object of `manifest` until `until` at least, `manifest.json` last. Problems."""
    rest = (key for key in backup_keys(store, manifest) if key != manifest.path)  # streamed
    return lock_then_watermark(store, manifest, rest, until)


def lock_then_watermark(
    store: BackupStore, manifest: BackupManifest, keys: Iterable[str], until: datetime
) -> list[str]:
    """Retain `keys` (every object of the backup not yet retained that long) until `until`, then
    `manifest.json`: the watermark only once everything under it holds. Problems."""
    problems = extend_retention(store, keys, until)
    if problems:
        return problems
    return extend_retention(store, [manifest.path], until)


def retention_at_write(store: BackupStore, manifest: BackupManifest) -> Retention | None:
    """The object retention a backup's units create its objects with (the date `lock_committed`
    locks it to, as known when it started), or None when the store does not lock."""
    if store.lock is None or not retention_enabled(store):
        return None
    lock = store.lock
    until = lock.at_commit(manifest.component, manifest.source, manifest.started_at, manifest.started_at)
    return None if until is None else (lock.mode, until)


@dataclass
class Reuse:
    """What a backup's lock at commit can skip: the units created the objects they wrote retained
    (`retention_at_write`); `carried` are the entries taken from earlier backups, all from `parent`
    (or retained at least as long as it: a resumed run's copies, extended when the plan took them)."""

    carried: Callable[[], Iterable[ManifestEntry]]
    parent: BackupManifest | None


def lock_committed(store: BackupStore, manifest: BackupManifest, reuse: Reuse | None = None) -> list[str]:
    """Lock a backup just committed until the date its source's policy keeps the newest backup to.
    With `reuse`, only what is not already retained that long is patched."""
    if store.lock is None or not retention_enabled(store):
        return []
    until = store.lock.at_commit(manifest.component, manifest.source, manifest.started_at, utcnow())
    if until is None:
        return []
    written = retention_at_write(store, manifest) if reuse is not None else None
    if reuse is None or written is None or written[1] < until:
        return lock_backup(store, manifest, until)
    parent_until = manifest_retained_until(store, reuse.parent) if reuse.parent is not None else None
    carried = (
        (entry.stored_key for entry in reuse.carried())
        if parent_until is None or parent_until < until
        else iter(())
    )
    return lock_then_watermark(store, manifest, itertools.chain(carried, own_keys(store, manifest)), until)


@dataclass
class LockReport:
    """What `extend_kept` did (or, with dry_run, would do): extended backups and their new dates."""

    extended: dict[str, datetime] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def notes(self, dry_run: bool) -> list[str]:
        verb = "would extend" if dry_run else "extended"
        return [
            f"retention lock {verb}: backup {backup_id} retained until {until.isoformat()}"
            for backup_id, until in sorted(self.extended.items())
        ]


def manifest_retained_until(store: BackupStore, manifest: BackupManifest) -> datetime | None:
    """The retain-until of `manifest.json` (the watermark of its backup), or None."""
    blob = store.stat(manifest.path)
    return retained_until(blob) if blob is not None else None


def extend_kept(
    store: BackupStore,
    plan: RetentionPlan,
    manifests: dict[str, BackupManifest],
    policy: RetentionPolicy,
    now: datetime,
    dry_run: bool = False,
) -> LockReport:
    """Extend the lock of every kept backup whose keep date in `plan` is later than its lock."""
    report = LockReport()
    if store.lock is None or not retention_enabled(store):
        return report
    for backup_id, until in plan_until(plan, policy, now).items():
        manifest = manifests.get(backup_id)
        if manifest is None or not later(manifest_retained_until(store, manifest), until):
            continue
        report.extended[backup_id] = until
        if not dry_run:
            report.problems += lock_backup(store, manifest, until)
    return report
