"""Holds and retention policies against Backstop's local Cloud Storage server, which enforces them
like the real API (403 on deleting or replacing a held or retained object), driven by the real client.

Backups here go through the lifecycle every component shares (tasks/catalog/backups.py: begin, commit,
record validation), so what is shown holds for every component."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from backstop.core.manifest import BackupManifest, ManifestEntry, utcnow
from backstop.core.retention import RetentionPolicy
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.catalog.stored import verify_stored
from tasks.engine.secondary import copy_to_secondary
from tasks.operations.prune import prune
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import crc32c_b64
from tests.conftest import unique

pytestmark = pytest.mark.integration

KEEP_ONE = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, min_validated=1)
KEEP_TWO = RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0, min_validated=1)


@pytest.fixture
def held_store(policy_gcs: Any) -> BackupStore:
    """A backup store on the policy server that holds validated manifests (the settings' default)."""
    return BackupStore(policy_gcs, policy_gcs.create_bucket(unique("backups")).name, hold_validated=True)


def backup(
    store: BackupStore,
    source: str,
    generation: int,
    days_ago: float = 0,
    component: str = "gcs",
    parts: list[str] | None = None,
) -> BackupManifest:
    """One committed backup: a file in its folder and a pool object, through the shared lifecycle
    (`parts`: the parts it holds, for a component backed up in parts)."""
    manifest = catalog.begin_backup(store, component, source)
    if days_ago:
        started = utcnow() - timedelta(days=days_ago)
        store.clear_in_progress(manifest)
        manifest = manifest.model_copy(
            update={"started_at": started, "backup_id": f"{started:%Y%m%dT%H%M%S}Z-{manifest.backup_id[-6:]}"}
        )
    entries = []
    for key, data in (
        (f"{manifest.folder}state/source.json", f"state {manifest.backup_id}".encode()),
        (f"pool/{component}/{source}/{generation}/obj", f"generation {generation}".encode()),
    ):
        if store.stat(key) is None:
            store.put_bytes(key, data)
        entries.append(
            ManifestEntry(
                name=key.rsplit("/", 2)[-2], stored_key=key, size=len(data), crc32c=crc32c_b64(data)
            )
        )
    return catalog.commit_backup(store, manifest, entries, {"parts": parts} if parts else None)


def validate(store: BackupStore, manifest: BackupManifest) -> BackupManifest:
    checked = verify_stored(store, manifest, 100)
    problems, read = checked.problems, checked.read_back
    return catalog.record_validation(store, manifest, problems, len(manifest.entries), read)


def held(store: BackupStore, manifest: BackupManifest) -> bool:
    """Whether the bucket says the manifest object is under a temporary hold (read back)."""
    blob = store.bucket.get_blob(manifest.path)
    return blob is not None and bool(blob.temporary_hold)


def test_holds_move_forward_across_backup_validate_prune(held_store: BackupStore) -> None:
    store, source = held_store, unique("src")
    a = validate(store, backup(store, source, 1, days_ago=3))
    assert held(store, a)  # held from its validation on

    b = backup(store, source, 2, days_ago=2)
    assert held(store, a) and not held(store, b)  # b is not validated: a stays the held one
    report = prune(store, "gcs", source, KEEP_ONE, utcnow())
    # keep_last 1 keeps b, min_validated keeps a: nothing moves until a newer backup is validated
    assert report.removed == [] and held(store, a) and not held(store, b)

    b = validate(store, b)
    assert held(store, a) and held(store, b)  # released from a only once a newer one holds it
    report = prune(store, "gcs", source, KEEP_ONE, utcnow())
    assert report.removed == [a.backup_id]
    assert held(store, b) and any(f"newest validated backup {b.backup_id} is held" in n for n in report.notes)
    assert report.kept_by_bucket == [] and report.not_deleted == []
    assert store.stat(a.path) is None

    c = validate(store, backup(store, source, 3, days_ago=1))
    report = prune(store, "gcs", source, KEEP_ONE, utcnow())
    assert report.removed == [b.backup_id] and held(store, c)
    [remaining] = index.list_manifests(store, "gcs", source)
    assert remaining.backup_id == c.backup_id and remaining.validated


def test_the_newest_backup_of_each_part_stays_held_and_kept(held_store: BackupStore) -> None:
    """Composer's DAGs are backed up daily and its metadata hourly: the holds and prune keep the
    newest validated backup of each part (the latest restore point), not only the newest backup."""
    store, source = held_store, unique("env")
    dags = validate(
        store, backup(store, source, 1, days_ago=0.5, component="composer", parts=["dags", "config"])
    )
    metadata = [
        validate(
            store,
            backup(store, source, 2 + n, days_ago=0.3 - n / 10, component="composer", parts=["metadata"]),
        )
        for n in range(3)
    ]
    report = prune(store, "composer", source, KEEP_ONE, utcnow())
    assert sorted(report.removed) == sorted(m.backup_id for m in metadata[:2])
    assert held(store, dags) and held(store, metadata[2])
    assert any(dags.backup_id in n and metadata[2].backup_id in n and "are held" in n for n in report.notes)
    names = {m.backup_id for m in index.list_manifests(store, "composer", source)}
    assert names == {dags.backup_id, metadata[2].backup_id}


def test_a_held_manifest_survives_prune_is_reported_and_the_rest_is_pruned(held_store: BackupStore) -> None:
    store, source = held_store, unique("src")
    backups = [validate(store, backup(store, source, 10 + d, days_ago=d)) for d in (4, 3, 2, 1, 0)]
    # someone else's hold (an event-based hold: a legal hold, say) on a backup the policy removes
    legal = store.bucket.blob(backups[0].path)
    legal.event_based_hold = True
    legal.patch()
    pool = store.bucket.blob(f"pool/gcs/{source}/13/obj")  # data of a removed backup
    pool.event_based_hold = True
    pool.patch()

    report = prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert sorted(report.removed) == sorted(b.backup_id for b in backups[1:3])
    assert report.not_deleted == []  # kept by the bucket is no failure
    assert any(backups[0].backup_id in k and "event-based hold" in k for k in report.kept_by_bucket)
    assert any(f"pool/gcs/{source}/13/obj" in k and "event-based hold" in k for k in report.kept_by_bucket)
    left = set(store.list(""))
    assert backups[0].path in left and f"pool/gcs/{source}/13/obj" in left
    assert f"pool/gcs/{source}/12/obj" not in left and not any(k.startswith(backups[2].folder) for k in left)
    names = {m.backup_id for m in index.list_manifests(store, "gcs", source)}
    assert names == {backups[0].backup_id, backups[3].backup_id, backups[4].backup_id}
    assert held(store, backups[4]) and not held(store, backups[3])  # the Backstop holds moved forward


def test_a_retention_policy_keeps_young_objects_reported_and_validation_still_works(
    policy_gcs: Any, held_store: BackupStore
) -> None:
    store, source = held_store, unique("src")
    old = [backup(store, source, 10 + d, days_ago=d) for d in (4, 3)]
    time.sleep(3.2)  # these are now older than the 3-second policy below
    young = [backup(store, source, 10 + d, days_ago=d) for d in (2, 1)]
    bucket = policy_gcs.get_bucket(store.bucket_name)
    bucket.retention_period = 3
    bucket.patch()
    fresh = backup(store, source, 20)  # under the policy: its in-progress marker cannot be deleted
    assert list(store.list(f"_inprogress/gcs/{source}/")) == [
        f"_inprogress/gcs/{source}/{fresh.backup_id}.json"
    ]
    # validation replaces nothing: it records its outcome beside the manifest, which the policy allows
    fresh = validate(store, fresh)
    assert store.read_manifest(fresh.path).validated and held(store, fresh)

    report = prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert sorted(report.removed) == sorted(b.backup_id for b in old)  # old enough: gone
    assert report.not_deleted == []
    assert any(young[0].backup_id in k and "retention policy" in k for k in report.kept_by_bucket)
    remaining = {m.backup_id for m in index.list_manifests(store, "gcs", source)}
    assert remaining == {young[0].backup_id, young[1].backup_id, fresh.backup_id}
    # the marker the policy kept does not make prune believe a backup is running: the pool was swept
    assert not any("in progress" in n for n in report.notes)
    assert f"pool/gcs/{source}/14/obj" not in store.list(f"pool/gcs/{source}/")


def test_secondary_copy_and_revalidation_of_a_held_manifest(policy_gcs: Any, held_store: BackupStore) -> None:
    store, source = held_store, unique("src")
    second = BackupStore(policy_gcs, policy_gcs.create_bucket(unique("backups-dr")).name, hold_validated=True)
    manifest = validate(store, backup(store, source, 1))
    assert held(store, manifest)
    copied = copy_to_secondary(store, second, manifest)
    assert copied.secondary is not None and copied.secondary.ok
    assert store.read_manifest(manifest.path).secondary == copied.secondary
    assert held(second, manifest) and second.read_manifest(manifest.path).validated
    again = validate(store, store.read_manifest(manifest.path))
    assert again.validated and store.read_manifest(manifest.path).secondary == copied.secondary
