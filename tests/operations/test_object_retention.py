"""Backups that stolen writer credentials cannot delete: object retention (Object Retention Lock) on
every object a kept backup references, driven by the retention plan, on Backstop's local Cloud
Storage server (which enforces it, holds, retention policies and bucket IAM like the JSON API),
with each job acting as its own service account of deployments/iam/roles.yaml."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backstop.core.errors import ValidationFailed
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.retention import RetentionPolicy
from backstop.core.retention_lock import RetentionLock
from blocks.settings import BackstopSettings
from localdev.platform import PROJECT
from tasks.catalog import backups as catalog
from tasks.catalog import locks
from tasks.catalog.stored import verify_stored
from tasks.components.gcs import plan as gcs_plan
from tasks.components.gcs.copy import copy_batch
from tasks.engine.calls import ComponentCalls
from tasks.engine.secondary import copy_objects, copy_to_secondary
from tasks.operations import iam
from tasks.operations.prune import prune
from tasks.storage.bucket import BackupStore, open_store
from tasks.storage.google_api import crc32c_b64
from tests.attacker import Domains, attack_bucket, attack_objects, backup_objects
from tests.conftest import service_account_info, unique

pytestmark = pytest.mark.integration

GFS = RetentionPolicy(keep_last=1, keep_daily=7, keep_weekly=4, keep_monthly=12)
KEEP_ONE = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_within_days=1)
LAST_ONE = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)


@pytest.fixture
def policy_host(policy_gcs: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    monkeypatch.setenv("BACKSTOP_CHUNK_ENTRIES", "2")  # chunked manifests: chunks are locked too
    return policy_gcs


def backup(
    store: BackupStore, source: str, generation: int, started: datetime | None = None
) -> BackupManifest:
    """A committed backup of three files (two in its folder, one in the pool), through the lifecycle."""
    manifest = catalog.begin_backup(store, "gcs", source)
    if started is not None:
        manifest = manifest.model_copy(
            update={"started_at": started, "backup_id": f"{started:%Y%m%dT%H%M%S}Z-{manifest.backup_id[-6:]}"}
        )
    entries = []
    for key, data in (
        (f"{manifest.folder}data/a.csv", f"a {generation}".encode()),
        (f"{manifest.folder}data/b.csv", f"b {generation}".encode()),
        (f"pool/gcs/{source}/shared/obj", b"shared by every backup of the source"),
    ):
        if store.stat(key) is None:
            store.put_bytes(key, data)
        entries.append(
            ManifestEntry(
                name=key.rsplit("/", 1)[-1] + key[-8:],
                stored_key=key,
                size=len(data),
                crc32c=crc32c_b64(data),
            )
        )
    return catalog.commit_backup(store, manifest, entries)


def contents(store: BackupStore, manifest: BackupManifest) -> dict[str, bytes]:
    return {e.stored_key: store.get_bytes(e.stored_key) for e in store.iter_entries(manifest)}


def test_a_kept_backup_and_its_secondary_copy_survive_the_writer_and_the_pruner(
    policy_host: Any, prefect_harness: None
) -> None:
    from prefect_gcp import GcpCredentials

    domains = Domains(policy_host, GFS)
    writer = domains.store("backstop-backup-writer")
    committed = backup(writer, unique("src"), 1)
    manifest = catalog.record_validation(domains.store("backstop-validator"), committed, [], 3, 3)
    assert manifest.chunks  # a chunked manifest: its chunks are objects of the backup too
    before = contents(domains.store("backstop-restorer"), manifest)

    # the secondary copy, written by its own account through its own credentials block
    block = unique("backstop-secondary-writer")
    email = iam.email("backstop-secondary-writer", PROJECT)
    GcpCredentials(service_account_info=service_account_info(email)).save(block, overwrite=True)
    settings = BackstopSettings(
        project=PROJECT,
        backup_bucket=domains.primary,
        secondary_bucket=domains.secondary,
        secondary_credentials_block=block,
        retention=asdict(GFS),
    )
    copied = copy_to_secondary(
        domains.store("backstop-secondary-writer"), open_store(settings, secondary=True), manifest
    )
    assert copied.secondary is not None and copied.secondary.ok, copied.secondary

    # every object of the backup is retained until the date the plan keeps the newest backup to
    until = domains.lock.at_commit("gcs", manifest.source, manifest.started_at, datetime.now(UTC))
    assert until is not None and until > datetime.now(UTC) + timedelta(days=6)
    owner = BackupStore(policy_host, domains.primary)
    keys = backup_objects(owner, manifest)
    assert any("/_chunks/" in k for k in keys) and any(k.startswith("pool/") for k in keys)
    for key in keys:
        assert owner.stat(key).retention.retain_until_time >= until - timedelta(seconds=1), key
    second_keys = backup_objects(BackupStore(policy_host, domains.secondary), manifest)

    # the stolen writer key: nothing of the backup, the bucket or the secondary copy gives way
    thief = domains.client("backstop-backup-writer")
    assert attack_objects(thief, domains.primary, keys) == []
    assert attack_bucket(thief, domains.primary) == []
    assert attack_objects(thief, domains.secondary, second_keys) == []
    assert attack_bucket(thief, domains.secondary) == []
    # the pruner's key, which may delete and move holds: it releases the holds, and the retention
    # still stops every delete (and it cannot shorten a retention)
    for bucket, found in ((domains.primary, keys), (domains.secondary, second_keys)):
        worked = attack_objects(domains.client("backstop-pruner"), bucket, found)
        assert all(w.startswith("release holds of") for w in worked), worked
    # the secondary writer's key reaches its own copy only, and cannot destroy that either
    assert attack_objects(domains.client("backstop-secondary-writer"), domains.secondary, second_keys) == []

    restorer = domains.store("backstop-restorer")
    assert verify_stored(restorer, manifest, 100).problems == []
    assert contents(restorer, manifest) == before
    assert contents(domains.store("backstop-restorer", secondary=True), manifest) == before


def test_prune_extends_a_promoted_backup_never_shortens_and_never_deletes_what_is_retained(
    policy_host: Any,
) -> None:
    domains = Domains(policy_host, KEEP_ONE)
    writer, pruner, source = (
        domains.store("backstop-backup-writer"),
        domains.store("backstop-pruner"),
        unique("src"),
    )
    older = backup(writer, source, 1)
    newer = backup(writer, source, 2)
    owner = BackupStore(policy_host, domains.primary)
    older_until = locks.manifest_retained_until(owner, older)
    assert older_until is not None and older_until > datetime.now(UTC) + timedelta(hours=23)

    # the settings now say keep_last 1, which removes the older backup; it is retained for a day
    # from its commit: prune leaves it alone (sends no delete) and says until when
    report = prune(pruner, "gcs", source, LAST_ONE, datetime.now(UTC), grace_hours=0)
    assert report.removed == [] and report.not_deleted == [] and report.kept_by_bucket == []
    assert report.retained == {older.backup_id: older_until}
    [row] = [r for r in report.rows() if r["backup_id"] == older.backup_id]
    assert row["decision"] == "remove" and f"retained until {older_until.isoformat()}" in row["reason"]
    assert owner.stat(older.path) is not None

    # a month later (as prune sees it) the newer backup is the keeper of a closed month: promoted
    monthly = RetentionPolicy(keep_last=1, keep_daily=7, keep_weekly=0, keep_monthly=6)
    later = datetime.now(UTC) + timedelta(days=40)
    report = prune(pruner, "gcs", source, monthly, later, dry_run=True)
    promoted = report.summary()
    assert any(newer.backup_id in n and "would extend" in n for n in promoted["notes"])
    report = prune(pruner, "gcs", source, monthly, later, grace_hours=0)
    until = locks.manifest_retained_until(owner, newer)
    start = newer.started_at.astimezone(UTC)
    assert until is not None and until >= datetime(start.year, start.month, 1, tzinfo=UTC) + timedelta(
        days=28 * 6
    )
    shared = owner.stat(f"pool/gcs/{source}/shared/obj").retention.retain_until_time
    assert shared == until  # the pool object shared by both carries the latest date
    # a shorter policy later never shortens what is locked
    prune(pruner, "gcs", source, LAST_ONE, later, grace_hours=0)
    assert locks.manifest_retained_until(owner, newer) == until


def test_a_bucket_backup_creates_its_copies_retained_and_later_backups_only_extend_what_falls_short(
    policy_host: Any,
) -> None:
    """Cost that stays flat: a copy is created retained (one request, not a copy and a patch), and a
    backup of unchanged objects leaves them alone while the backup before it holds them long enough
    (an object patched shows as a new metageneration); every object still reaches its backup's date."""
    domains = Domains(policy_host, GFS)
    store = BackupStore(
        policy_host, domains.primary, lock=RetentionLock("Unlocked", GFS, step=timedelta(days=7))
    )
    settings = BackstopSettings(project=PROJECT, backup_bucket=domains.primary)
    source = policy_host.create_bucket(unique("src"))
    for i in range(12):
        source.blob(f"d/{i:02}.txt").upload_from_string(f"object {i}".encode())
    gcs = ComponentCalls("gcs")

    def pool() -> dict[str, Any]:
        return {b.name: b for b in policy_host.list_blobs(domains.primary, prefix=f"pool/gcs/{source.name}/")}

    def watermark(manifest: BackupManifest) -> datetime:
        until = locks.manifest_retained_until(store, manifest)
        assert until is not None
        for key in locks.backup_keys(store, manifest):  # every object at least as long
            assert store.stat(key).retention.retain_until_time >= until, key
        return until

    first = gcs.backup(settings, store, source.name)
    until = watermark(first)
    # the keep date (the newest backup's day + 7 daily backups), rounded up to a multiple of 7 days
    assert until.timestamp() % (7 * 86400) == 0
    assert until >= first.started_at + timedelta(days=7)
    copies = pool()
    assert len(copies) == 12
    assert {(b.metageneration, b.retention.retain_until_time) for b in copies.values()} == {(1, until)}

    source.blob("d/new.txt").upload_from_string(b"one more")
    second = gcs.backup(settings, store, source.name)
    assert (second.source_state["copied"], second.source_state["reused"]) == (1, 12)
    assert watermark(second) == until
    assert {(b.metageneration, b.retention.retain_until_time) for b in pool().values()} == {(1, until)}

    # the policy now keeps backups longer: the backup before no longer holds them long enough
    longer = RetentionPolicy(keep_last=1, keep_daily=40, keep_weekly=4, keep_monthly=12)
    store.lock = RetentionLock("Unlocked", longer, step=timedelta(days=7))
    third = gcs.backup(settings, store, source.name)
    later = watermark(third)
    assert later >= until + timedelta(days=30)
    assert {(b.metageneration, b.retention.retain_until_time) for b in pool().values()} == {(2, later)}
    assert store.get_bytes(second.path)  # and nothing of the older backups was lost
    assert len(list(store.iter_entries(third))) == 13


def test_a_copy_tried_again_onto_its_retained_key_takes_the_copy_made_before(policy_host: Any) -> None:
    """A unit that runs again (a retry, a run that left no checkpoint) meets its own earlier copies,
    which are retained and cannot be replaced: it takes them, and a copy that was not the same
    object is refused by its checksum."""
    domains = Domains(policy_host, GFS)
    store = BackupStore(policy_host, domains.primary, lock=domains.lock)
    source = policy_host.create_bucket(unique("src"))
    source.blob("a.txt").upload_from_string(b"the data")
    obj = gcs_plan.source_object(source.get_blob("a.txt"))
    key = gcs_plan.pool_key(source.name, obj.name, obj.generation)
    retention = ("Unlocked", datetime.now(UTC) + timedelta(days=3))
    first = copy_batch(policy_host, source.name, [(obj, key)], store, retention=retention)
    again = copy_batch(policy_host, source.name, [(obj, key)], store, retention=retention)
    assert again == first and store.get_bytes(key) == b"the data"
    assert store.stat(key).retention.retain_until_time >= retention[1] - timedelta(seconds=1)
    # without object retention, the bucket's retention policy (7 days, from harden) keeps it the same way
    unlocked = BackupStore(policy_host, domains.primary)
    source.blob("c.txt").upload_from_string(b"more data")
    young = gcs_plan.source_object(source.get_blob("c.txt"))
    items = [(young, gcs_plan.pool_key(source.name, young.name, young.generation))]
    made = copy_batch(policy_host, source.name, items, unlocked)
    assert unlocked.stat(items[0][1]).retention.retain_until_time is None
    assert copy_batch(policy_host, source.name, items, unlocked) == made

    other = gcs_plan.source_object(
        source.blob("b.txt").upload_from_string(b"other") or source.get_blob("b.txt")
    )
    with pytest.raises(ValidationFailed, match="crc32c"):  # not the bytes the key was made for
        copy_batch(policy_host, source.name, [(other, key)], store, retention=retention)


def test_the_secondary_copy_creates_its_copies_retained_and_extends_only_what_falls_short(
    policy_host: Any,
) -> None:
    domains = Domains(policy_host, GFS)
    lock = RetentionLock("Unlocked", GFS, step=timedelta(days=7))
    primary = BackupStore(policy_host, domains.primary, lock=lock)
    secondary = BackupStore(policy_host, domains.secondary, lock=lock)
    settings = BackstopSettings(project=PROJECT, backup_bucket=domains.primary)
    source = policy_host.create_bucket(unique("src"))
    for i in range(8):
        source.blob(f"d/{i}.txt").upload_from_string(f"object {i}".encode())
    gcs = ComponentCalls("gcs")

    def copies() -> set[tuple[int, datetime]]:
        listed = policy_host.list_blobs(domains.secondary, prefix=f"pool/gcs/{source.name}/")
        return {(b.metageneration, b.retention.retain_until_time) for b in listed}

    first = gcs.backup(settings, primary, source.name)
    assert copy_to_secondary(primary, secondary, first).secondary.ok
    until = locks.manifest_retained_until(primary, first)
    assert until is not None and locks.manifest_retained_until(secondary, first) == until
    assert copies() == {(1, until)}  # created retained: no patch
    # copied again (a request retried after its answer was lost, a copy running beside it): the
    # retained copy cannot be replaced, and is taken as it is
    keys = [(e.stored_key, e.size) for e in primary.iter_entries(first)]
    assert copy_objects(primary, secondary, None, keys, ("Unlocked", until)) == []
    assert copies() == {(1, until)}

    source.blob("d/new.txt").upload_from_string(b"one more")
    second = gcs.backup(settings, primary, source.name)
    assert copy_to_secondary(primary, secondary, second).secondary.ok
    assert copies() == {(1, until)}  # the 8 it held were retained long enough: left alone

    # the secondary held them less long than the primary now does (a longer policy): extended
    primary.lock = RetentionLock("Unlocked", replace(GFS, keep_daily=40), step=timedelta(days=7))
    third = gcs.backup(settings, primary, source.name)
    later = locks.manifest_retained_until(primary, third)
    assert later is not None and later > until
    assert copy_to_secondary(primary, secondary, third).secondary.ok
    assert copies() == {(2, later)}
    assert locks.manifest_retained_until(secondary, third) == later
    for key in locks.backup_keys(secondary, third):
        assert secondary.stat(key).retention.retain_until_time >= later, key
