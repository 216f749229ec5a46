"""Secondary-region copies: server-side copy, verify by checksum, manifest last; restore fallback.

`copy_to_secondary` copies every stored object of a committed backup to the secondary bucket
(server-side rewrite, skipping objects already there with the same crc32c and size; in batches
that run as units on the settings' task runner inside a flow run), verifies the
copies against the manifest, writes the manifest in the secondary LAST (so a secondary manifest
means a complete secondary copy), and records a `SecondaryCopy` in the primary manifest.

`open_for_restore` picks where a restore reads from: the primary, or the secondary when the
primary bucket is unavailable, the manifest is missing or damaged, or stored objects fail their
checksums, and it says which and why.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backstop.core.errors import BackstopError, ConfigError, InvalidInput, ValidationFailed
from backstop.core.manifest import BackupManifest, SecondaryCopy, Stored, utcnow
from blocks.settings import BackstopSettings
from tasks.catalog import backups as catalog
from tasks.catalog import index, locks
from tasks.catalog.stored import BATCH, StoredListing, against_listing, verify_stored
from tasks.engine import units
from tasks.engine.protocol import Context
from tasks.storage import shared_limit
from tasks.storage.bucket import BackupStore
from tasks.storage.copies import (
    Copy,
    Retention,
    copy_workers,
    made_in_batches,
    ramp_for,
    rewrite,
    run_all,
)
from tasks.storage.google_api import batch_groups, converted_errors
from tasks.storage.object_lock import created_retained, extend_retention, retention_enabled
from tasks.storage.parallel import Batches, batched
from tasks.storage.spool import Held


def copy_to_secondary(
    primary: BackupStore,
    secondary: BackupStore,
    manifest: BackupManifest,
    settings: BackstopSettings | None = None,
) -> BackupManifest:
    """Copy one committed backup to `secondary`, verify it, and record the outcome in the primary manifest.

    Args:
        primary: the store the backup is in.
        secondary: the store in the other region.
        manifest: the committed backup's manifest (as read from the primary).
        settings: when given, inside a flow run the copies run as units on the settings' task
            runner (tasks/engine/units.py); without, here.

    Returns:
        The primary manifest, rewritten with its `secondary` record (ok or with problems).
    """
    problems: list[str] = []
    objects = 0
    label = f"secondary-{manifest.component}-{manifest.source}-{manifest.backup_id}"
    batches = units.UnitBatches(Context(settings, primary), "secondary", label) if settings else Batches()
    shared_rate = settings.gcs_write_rate if settings and batches.spread else None

    def same(held: Held | None, entry: Stored) -> bool:
        return held is not None and held[0] == entry.size and (not entry.crc32c or held[1] == entry.crc32c)

    retention = _retention(primary, secondary, manifest)

    def to_copy() -> Generator[tuple[str, int]]:
        """The stored keys the secondary lacks, with their sizes, a batch of entries at a time (never
        all in memory); those it holds but retains for less long than the copy's date are extended
        here."""
        nonlocal objects
        with StoredListing(secondary, retention=retention is not None) as present:
            for batch in batched(primary.iter_stored(manifest), BATCH):
                held = present.lookup(batch)
                there = {e.stored_key for e in batch if same(held.get(e.stored_key), e)}
                yield from sorted({(e.stored_key, e.size) for e in batch if e.stored_key not in there})
                if retention is not None:
                    held_keys = sorted(there)
                    until = present.retained_until(held_keys)
                    short = [k for k in held_keys if k not in until or until[k] < retention[1]]
                    problems.extend(extend_retention(secondary, short, retention[1]))
                objects += len(batch)

    def done(found: list[str]) -> None:
        problems.extend(found)

    # The chunk files of a large manifest first (a few), then every stored object the secondary lacks.
    chunk_keys = [manifest.folder + c.key for c in manifest.chunks]
    problems += copy_objects(
        primary, secondary, None, [(k, 0) for k in chunk_keys if secondary.stat(k) is None], retention
    )
    keys = to_copy()
    if shared_rate is not None:  # one write rate for the secondary bucket across the cluster's workers
        shared_limit.prepare(secondary.bucket_name, shared_rate)
    try:
        batches.run(
            functools.partial(copy_objects, primary, secondary, shared_rate, retention=retention), keys, done
        )
    finally:
        keys.close()
        if shared_rate is not None:
            shared_limit.stop(secondary.bucket_name)
    versions: set[str] = set()
    for entry, there in against_listing(secondary, primary.iter_stored(manifest)):
        where = f"{entry.name!r} ({secondary.where(entry.stored_key)})"
        if there is None:
            problems.append(f"missing in secondary: {where}")
        elif not same(there, entry):
            problems.append(
                f"checksum differs in secondary: {where} crc32c {there[1]} / {there[0]} bytes, "
                f"manifest says {entry.crc32c} / {entry.size}"
            )
        elif there[2]:
            versions.add(there[2])
    record = SecondaryCopy(
        bucket=secondary.bucket_name,
        at=utcnow(),
        ok=not problems,
        objects=objects,
        problems=problems[:200],
        kms_key_name=secondary.kms_key_name,
        kms_key_versions=sorted(versions) or None,
    )
    updated = manifest.model_copy(update={"secondary": record})
    if not problems:
        index.write_manifest(secondary, updated)  # last: its presence means the secondary copy is complete
        _lock_copy(secondary, updated, retention)
    index.write_manifest(primary, updated)
    return updated


SHOWN = 200  # failed copies a unit names (the others are counted)


def copy_objects(
    primary: BackupStore,
    secondary: BackupStore,
    shared_rate: float | None,
    keys: Sequence[Sequence[Any]],
    retention: Retention | None = None,
) -> list[str]:
    """Copy `keys` ([key, size] each) from `primary` to `secondary` server-side, on the process's
    copy workers (a unit of the secondary copy), each created with `retention`, the small ones in
    batch requests; the problems (at most SHOWN named). `shared_rate`: the secondary bucket's
    writes take its rate limit shared by every worker (a Dask cluster)."""
    if shared_rate is not None:
        ramp_for(secondary.bucket_name, shared_rate, True)

    def copy(key: str, made: Any | None) -> str | None:
        try:
            with converted_errors(f"copying {primary.where(key)} to {secondary.where(key)}"):
                # on the secondary's write ramp; a key already made is taken (checked against the
                # manifest after the copies)
                created_retained(
                    secondary,
                    key,
                    retention,
                    lambda: made or rewrite(primary.bucket.blob(key), secondary.blob(key), retention),
                )
        except BackstopError as exc:
            return str(exc)
        return None

    def copy_group(group: list[Sequence[Any]]) -> list[str | None]:
        copies = [(Copy(primary.bucket_name, key, None, key), size) for key, size in group]
        made = made_in_batches(secondary.client, secondary.bucket, copies, secondary.kms_key_name, retention)
        return [copy(key, made.get(key)) for key, _ in group]

    problems = [p for group in run_all(copy_group, batch_groups(keys, copy_workers())) for p in group if p]
    more = [f"and {len(problems) - SHOWN} more copies failed"] if len(problems) > SHOWN else []
    return problems[:SHOWN] + more


def _retention(primary: BackupStore, secondary: BackupStore, manifest: BackupManifest) -> Retention | None:
    """The retention of the secondary copy: as long as the primary is retained (or as its commit
    would be); None when the secondary does not lock."""
    if secondary.lock is None or not retention_enabled(secondary):
        return None
    until = locks.manifest_retained_until(primary, manifest) or secondary.lock.at_commit(
        manifest.component, manifest.source, manifest.started_at, utcnow()
    )
    return None if until is None else (secondary.lock.mode, until)


def _lock_copy(secondary: BackupStore, manifest: BackupManifest, retention: Retention | None) -> None:
    """Lock the secondary copy: its stored objects were copied or extended to `retention` already,
    then its manifest's own objects and, last, `manifest.json` (the watermark)."""
    if retention is None:
        return
    problems = locks.lock_then_watermark(
        secondary, manifest, locks.own_keys(secondary, manifest), retention[1]
    )
    if problems:
        logging.getLogger(__name__).warning(
            "secondary copy of %s not locked (the next prune of the secondary locks it): %s",
            manifest.backup_id,
            problems[0],
        )


@dataclass
class RestoreSource:
    """Where a restore reads from, and why."""

    store: BackupStore
    manifest: BackupManifest
    from_secondary: bool
    reason: str

    @property
    def message(self) -> str:
        where = "secondary" if self.from_secondary else "primary"
        return f"reading backup {self.manifest.backup_id} from the {where} bucket {self.store.where()}" + (
            f" because {self.reason}" if self.reason else ""
        )


def _open(
    store: BackupStore,
    component: str,
    source: str | None,
    backup_id: str | None,
    before: datetime | None,
    where: Callable[[BackupManifest], bool] | None = None,
) -> BackupManifest:
    store.check_bucket()
    manifest = catalog.resolve_backup(
        store, component, source, backup_id, before, validated_only=backup_id is None, where=where
    )
    problems = verify_stored(store, manifest, 0).problems
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ValidationFailed(
            f"backup {manifest.backup_id} in {store.where()} is damaged: {shown}", problems
        )
    return manifest


def choose_store(
    primary: BackupStore,
    secondary: BackupStore | None,
    component: str,
    source: str | None = None,
    backup_id: str | None = None,
    before: datetime | None = None,
    where: Callable[[BackupManifest], bool] | None = None,
) -> RestoreSource:
    """The primary when the backup there is present and intact, else the secondary (saying why).

    Raises:
        NotFound / ValidationFailed / Unavailable naming both buckets when neither can serve the backup.
    """
    try:
        return RestoreSource(primary, _open(primary, component, source, backup_id, before, where), False, "")
    except InvalidInput:
        raise  # a backup of another source, or a malformed request: no copy can make it right
    except BackstopError as exc:
        if secondary is None:
            raise
        primary_error = exc
    try:
        manifest = _open(secondary, component, source, backup_id, before, where)
    except BackstopError as exc:
        message = f"primary: {primary_error}; secondary: {exc}"
        if isinstance(primary_error, ValidationFailed):  # damaged here, absent or damaged there
            raise ValidationFailed(message, primary_error.problems) from exc
        raise type(exc)(message) from exc
    return RestoreSource(secondary, manifest, True, f"the primary could not serve it: {primary_error}")


def open_for_restore(
    settings: BackstopSettings,
    component: str,
    source: str | None = None,
    backup_id: str | None = None,
    before: datetime | None = None,
    client: Any | None = None,
    primary: BackupStore | None = None,
    where: Callable[[BackupManifest], bool] | None = None,
) -> RestoreSource:
    """Open the backup to restore from the settings' primary bucket (or `primary`), falling back to
    the secondary."""
    from tasks.storage.bucket import open_store

    primary = primary or open_store(settings, client=client)
    try:
        secondary = open_store(settings, secondary=True, client=client) if settings.secondary_bucket else None
    except ConfigError:
        secondary = None
    return choose_store(primary, secondary, component, source, backup_id, before, where)


def pending_copies(primary: BackupStore, component: str | None = None) -> list[BackupManifest]:
    """Committed backups with no good secondary copy yet, oldest first."""
    found = [
        m
        for m in index.list_manifests(primary, component, on_damaged=lambda _: None)
        if m.finished_at is not None and (m.secondary is None or not m.secondary.ok)
    ]
    return sorted(found, key=lambda m: (m.started_at, m.backup_id))


def secondary_store(settings: BackstopSettings, client: Any | None = None) -> BackupStore:
    """The secondary store named by the settings; ConfigError when none is configured."""
    from tasks.storage.bucket import open_store

    if not settings.secondary_bucket:
        raise ConfigError("settings name no secondary_bucket: set one to copy backups to another region")
    store = open_store(settings, secondary=True, client=client)
    with converted_errors(f"secondary bucket {store.where()}"):
        store.check_bucket()
    return store
