"""Secondary-region copies on fake-gcs-server: copy, verify, manifest last, restore fallback."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.errors import NotFound, ValidationFailed
from backstop.core.manifest import ManifestEntry
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.catalog.stored import verify_stored
from tasks.components.gcs.plan import pool_key
from tasks.engine.secondary import choose_store, copy_to_secondary, open_for_restore, pending_copies
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import crc32c_b64
from tests.conftest import unique

pytestmark = pytest.mark.integration


def committed_backup(store: BackupStore, source: str, files: int = 4, validate: bool = True) -> Any:
    manifest = catalog.begin_backup(store, "gcs", source)
    entries = []
    for i in range(files):
        data = f"{source} object {i} ".encode() * (i + 1)
        key = {  # per-backup files, pool objects in the layout before the spread and in the spread one
            0: f"{manifest.folder}data/part-{i}",
            1: f"pool/gcs/{source}/{100 + i}/obj-{i}",
            3: pool_key(source, f"obj-{i}", 100 + i),
        }[i % 4 if i % 2 else 0]
        store.put_bytes(key, data)
        entries.append(
            ManifestEntry(name=f"obj-{i}", stored_key=key, size=len(data), crc32c=crc32c_b64(data))
        )
    committed = catalog.commit_backup(store, manifest, entries)
    if validate:
        checked = verify_stored(store, committed, 100)
        problems, read = checked.problems, checked.read_back
        committed = catalog.record_validation(store, committed, problems, len(entries), read)
    return committed


@pytest.fixture
def stores(gcs: Any, settings: Any) -> tuple[BackupStore, BackupStore]:
    return BackupStore(gcs, settings.backup_bucket), BackupStore(gcs, settings.secondary_bucket)


def test_copy_is_verified_recorded_in_both_manifests_and_not_repeated(
    stores: tuple[BackupStore, BackupStore],
) -> None:
    primary, secondary = stores
    source = unique("src")
    backup = committed_backup(primary, source)
    assert [m.backup_id for m in pending_copies(primary)] == [backup.backup_id]

    copied = copy_to_secondary(primary, secondary, backup)
    assert copied.secondary is not None and copied.secondary.ok and copied.secondary.objects == 4
    assert copied.secondary.bucket == secondary.bucket_name
    assert primary.read_manifest(backup.path).secondary == copied.secondary
    mirror = secondary.read_manifest(backup.path)
    assert mirror.status == "validated"
    for entry in backup.entries:
        assert secondary.get_bytes(entry.stored_key) == primary.get_bytes(entry.stored_key)
    assert verify_stored(secondary, mirror, 100).problems == []
    assert pending_copies(primary) == []

    # a second backup sharing a pool object: only what the secondary lacks is copied, all verified
    again = committed_backup(primary, source, files=2)
    assert copy_to_secondary(primary, secondary, again).secondary.ok  # type: ignore[union-attr]


def test_a_failed_copy_writes_no_secondary_manifest_and_says_what_is_missing(
    stores: tuple[BackupStore, BackupStore],
) -> None:
    primary, secondary = stores
    source = unique("src")
    backup = committed_backup(primary, source, validate=False)
    primary.delete([backup.entries[0].stored_key])  # the primary lost an object: nothing to copy from
    copied = copy_to_secondary(primary, secondary, backup)
    assert copied.secondary is not None and not copied.secondary.ok
    assert any("obj-0" in p for p in copied.secondary.problems)
    assert secondary.stat(backup.path) is None
    assert [m.backup_id for m in pending_copies(primary)] == [backup.backup_id]


def test_restore_reads_the_primary_when_it_is_intact(
    settings: Any, stores: tuple[BackupStore, BackupStore]
) -> None:
    primary, secondary = stores
    backup = committed_backup(primary, unique("src"))
    copy_to_secondary(primary, secondary, backup)
    chosen = open_for_restore(settings, "gcs", backup_id=backup.backup_id)
    assert not chosen.from_secondary and chosen.store.bucket_name == primary.bucket_name
    assert "primary" in chosen.message


@pytest.mark.parametrize("damage", ["corrupt object", "damaged manifest", "missing manifest", "bucket gone"])
def test_restore_falls_back_to_the_secondary_and_says_why(
    gcs: Any, settings: Any, stores: tuple[BackupStore, BackupStore], damage: str
) -> None:
    primary, secondary = stores
    source = unique("src")
    backup = copy_to_secondary(primary, secondary, committed_backup(primary, source))
    if damage == "corrupt object":
        primary.put_bytes(backup.entries[1].stored_key, b"bit rot")
    elif damage == "damaged manifest":
        primary.put_bytes(backup.path, primary.get_bytes(backup.path)[:-40])
    elif damage == "missing manifest":
        primary.delete([backup.path])
    else:
        for blob in list(gcs.list_blobs(primary.bucket_name)):
            blob.delete()
        gcs.bucket(primary.bucket_name).delete()

    by_id = open_for_restore(settings, "gcs", backup_id=backup.backup_id)
    assert by_id.from_secondary and by_id.store.bucket_name == secondary.bucket_name
    assert by_id.manifest.backup_id == backup.backup_id
    assert "secondary" in by_id.message and "because the primary could not serve it" in by_id.message
    latest = choose_store(primary, secondary, "gcs", source)
    assert latest.from_secondary and latest.manifest.backup_id == backup.backup_id


def test_when_neither_bucket_has_the_backup_both_are_named(stores: tuple[BackupStore, BackupStore]) -> None:
    primary, secondary = stores
    backup = committed_backup(primary, unique("src"))
    primary.put_bytes(backup.entries[0].stored_key, b"bit rot")
    # damaged in the primary, absent from the secondary: the backup is damaged, and both are named
    with pytest.raises(
        ValidationFailed, match="primary: .*is damaged: size differs.*; secondary: .*not found"
    ):
        choose_store(primary, secondary, "gcs", backup_id=backup.backup_id)
    with pytest.raises(NotFound, match="no validated backup"):
        choose_store(primary, None, "gcs", source="nothing-here")


@pytest.mark.flow
def test_copy_flow_copies_every_pending_backup_once(
    settings: Any, saved_settings: str, stores: tuple[BackupStore, BackupStore]
) -> None:
    from flows.secondary import copy_backups_to_secondary

    primary, secondary = stores
    backups = [committed_backup(primary, unique("src")) for _ in range(3)]
    rows = copy_backups_to_secondary("", saved_settings)
    assert sorted(r["backup_id"] for r in rows) == sorted(b.backup_id for b in backups)
    assert all(r["ok"] for r in rows)
    assert sorted(m.backup_id for m in index.list_manifests(secondary)) == sorted(
        b.backup_id for b in backups
    )
    assert copy_backups_to_secondary("gcs", saved_settings) == []  # nothing left to copy


def test_reverification_rereads_the_secondary_copy_and_marks_a_damaged_one_there(
    settings: Any, stores: tuple[BackupStore, BackupStore]
) -> None:
    """A byte flipped in the secondary copy only: the re-verification names it, the secondary's
    catalog calls that copy invalid, the primary stays validated; with the primary damaged too, a
    restore finds no intact copy instead of reading the rotten one."""
    from tasks.engine import reverify

    primary, secondary = stores
    source = unique("src")
    backup = copy_to_secondary(primary, secondary, committed_backup(primary, source))
    victim = backup.entries[1].stored_key
    data = bytearray(secondary.get_bytes(victim))
    data[0] ^= 0x01
    secondary.put_bytes(victim, bytes(data))

    report = reverify.reverify(settings, primary, ["gcs"], share=1.0)
    mine = [r for r in report.sources if r.source == source]
    assert [(r.where, r.backups, list(r.damaged)) for r in mine] == [
        ("primary", 1, []),
        ("secondary", 1, [backup.backup_id]),
    ]
    assert any(
        f"gcs/{source} (secondary copy) backup {backup.backup_id} damaged" in p for p in report.problems()
    )
    assert secondary.read_manifest(backup.path).status == "invalid"
    assert primary.read_manifest(backup.path).status == "validated"
    assert open_for_restore(settings, "gcs", backup_id=backup.backup_id).from_secondary is False

    primary.put_bytes(backup.entries[2].stored_key, b"bit rot")
    with pytest.raises((ValidationFailed, NotFound)):
        open_for_restore(settings, "gcs", backup_id=backup.backup_id)


def test_reverification_names_a_secondary_bucket_it_cannot_read_and_still_reads_the_primary(
    settings: Any, stores: tuple[BackupStore, BackupStore]
) -> None:
    from tasks.engine import reverify

    primary, _ = stores
    source = unique("src")
    backup = committed_backup(primary, source)
    gone = settings.model_copy(update={"secondary_bucket": unique("no-such-dr")})
    report = reverify.reverify(gone, primary, ["gcs"], share=1.0)
    assert [(r.where, r.backups) for r in report.sources if r.source == source] == [("primary", 1)]
    (problem,) = [p for p in report.problems() if "secondary copy" in p]
    assert gone.secondary_bucket in problem and "could not be re-verified" in problem
    assert primary.read_manifest(backup.path).status == "validated"
