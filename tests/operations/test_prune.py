"""Prune on fake-gcs-server: manifests first, then mark and sweep; interrupted and re-run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from backstop.core.manifest import BackupManifest, ManifestEntry, new_backup_id, utcnow
from backstop.core.retention import RetentionPolicy
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.catalog.stored import verify_stored
from tasks.components.gcs.plan import pool_key as gcs_pool_key
from tasks.operations.prune import PruneReport, plan_prune, prune, remove_manifests
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import crc32c_b64
from tests.conftest import unique

pytestmark = pytest.mark.integration

KEEP_TWO = RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0, min_validated=1)


def pool_key(source: str, generation: int) -> str:
    """Odd generations in the spread-out pool layout, even ones in the layout before it (older
    backups): the sweep handles both."""
    name = f"obj-{generation}"
    return (
        gcs_pool_key(source, name, generation) if generation % 2 else f"pool/gcs/{source}/{generation}/{name}"
    )


def make_backup(
    store: BackupStore, source: str, days_ago: float, pool_generations: list[int], status: str = "validated"
) -> BackupManifest:
    """A committed backup: one per-backup file in its folder, plus references into the pool."""
    started = utcnow() - timedelta(days=days_ago)
    manifest = BackupManifest(
        backup_id=new_backup_id(started),
        component="gcs",
        source=source,
        started_at=started,
        finished_at=started + timedelta(minutes=1),
        status=status,  # type: ignore[arg-type]
    )
    entries = []
    own = f"{manifest.folder}state/source.json"
    store.put_bytes(own, f"state of {manifest.backup_id}".encode())
    entries.append(
        ManifestEntry(
            name="state",
            stored_key=own,
            size=len(f"state of {manifest.backup_id}"),
            crc32c=crc32c_b64(f"state of {manifest.backup_id}".encode()),
        )
    )
    for generation in pool_generations:
        key = pool_key(source, generation)
        data = f"generation {generation}".encode()
        if store.stat(key) is None:
            store.put_bytes(key, data)
        entries.append(
            ManifestEntry(
                name=f"obj-{generation}",
                stored_key=key,
                size=len(data),
                crc32c=crc32c_b64(data),
                generation=generation,
            )
        )
    manifest = manifest.model_copy(update={"entries": entries})
    index.write_manifest(store, manifest)
    return manifest


def five_backups(store: BackupStore, source: str) -> list[BackupManifest]:
    """Five daily backups, newest first; every one references generation 1, each adds its own."""
    return [make_backup(store, source, days, [1, 10 + days]) for days in range(5)]


def keys(store: BackupStore) -> set[str]:
    return set(store.list(""))


def assert_pruned_to_two(store: BackupStore, source: str, backups: list[BackupManifest]) -> None:
    remaining = index.list_manifests(store, "gcs", source)
    assert sorted(m.backup_id for m in remaining) == sorted(b.backup_id for b in backups[:2])
    left = keys(store)
    for gone in backups[2:]:
        assert not any(k.startswith(gone.folder) for k in left), gone.folder
        assert pool_key(source, 10 + (backups.index(gone))) not in left
    for kept in remaining:
        problems = verify_stored(store, kept, 100).problems
        assert problems == []
    assert pool_key(source, 1) in left  # written by the oldest backup, still needed by the newest


def test_dry_run_plans_and_deletes_nothing_then_prune_deletes_only_unreferenced_data(
    store: BackupStore,
) -> None:
    source = unique("src")
    backups = five_backups(store, source)
    before = keys(store)

    dry = prune(store, "gcs", source, KEEP_TWO, utcnow(), dry_run=True)
    assert keys(store) == before
    assert dry.plan.keep_ids == [b.backup_id for b in backups[:2]]
    assert dry.plan.remove_ids == [b.backup_id for b in backups[2:]]
    assert all("matches no keep rule" in reason for _, reason in dry.plan.remove)

    report = prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert report.ok and sorted(report.removed) == sorted(b.backup_id for b in backups[2:])
    assert report.deleted_objects == 3 * 2  # per removed backup: its folder file and its own pool object
    assert_pruned_to_two(store, source, backups)
    again = prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert again.removed == [] and again.deleted_objects == 0


def test_interrupted_prune_leaves_no_dangling_manifest_and_a_rerun_finishes(store: BackupStore) -> None:
    source = unique("src")
    backups = five_backups(store, source)
    plan, by_id, _ = plan_prune(store, "gcs", source, KEEP_TWO, utcnow())
    report = PruneReport("gcs", source, store.bucket_name, False, plan)
    remove_manifests(store, [by_id[b] for b in plan.remove_ids], report)
    # crash here, before the sweep: the catalog already shows only what remains, and all of it is intact
    remaining = index.list_manifests(store, "gcs", source)
    assert len(remaining) == 2
    assert all(verify_stored(store, m, 100).problems == [] for m in remaining)
    assert pool_key(source, 14) in keys(store)  # orphaned, not yet swept

    rerun = prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert rerun.removed == []  # nothing left to remove, only orphans to sweep
    assert rerun.deleted_objects == 6
    assert_pruned_to_two(store, source, backups)


def test_prune_during_a_backup_in_progress_leaves_the_pool_alone(store: BackupStore) -> None:
    source = unique("src")
    backups = five_backups(store, source)
    running = catalog.begin_backup(store, "gcs", source)
    report = prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert any("pool sweep skipped" in note and running.backup_id in note for note in report.notes)
    left = keys(store)
    assert pool_key(source, 14) in left  # the running backup may be reusing it
    assert not any(k.startswith(backups[4].folder) for k in left)  # per-backup data of removed backups went

    catalog.abandon_backup(store, running)
    prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert_pruned_to_two(store, source, backups)


def test_fresh_orphans_wait_for_the_grace_period_and_old_ones_go(store: BackupStore) -> None:
    source = unique("src")
    make_backup(store, source, 0, [1])
    fresh = BackupManifest(backup_id=new_backup_id(), component="gcs", source=source, started_at=utcnow())
    store.put_bytes(fresh.folder + "part-0", b"being written")  # a backup still writing, no manifest yet
    old_start = utcnow() - timedelta(days=3)
    old = BackupManifest(
        backup_id=new_backup_id(old_start), component="gcs", source=source, started_at=old_start
    )
    store.put_bytes(old.folder + "part-0", b"crashed run")
    store.put_bytes(f"gcs/{source}/README", b"not in the backup layout")

    report = prune(store, "gcs", source, KEEP_TWO, utcnow())
    left = keys(store)
    assert fresh.folder + "part-0" in left
    assert old.folder + "part-0" not in left
    assert f"gcs/{source}/README" in left
    assert report.deleted_objects == 1


def test_a_damaged_manifest_keeps_its_folder_and_stops_the_pool_sweep(store: BackupStore) -> None:
    source = unique("src")
    backups = five_backups(store, source)
    store.put_bytes(backups[3].path, b'{"not": "a manifest"}')
    report = prune(store, "gcs", source, KEEP_TWO, utcnow())
    assert any("damaged manifest" in note for note in report.notes)
    assert any("pool sweep skipped" in note for note in report.notes)
    left = keys(store)
    assert any(k.startswith(backups[3].folder + "state/") for k in left)
    assert not any(k.startswith(backups[4].folder) for k in left)


def test_real_gcs_backups_prune_to_the_newest_and_it_still_restores(
    gcs: Any, settings: Any, store: BackupStore
) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gcs")

    source = unique("src")
    bucket = gcs.create_bucket(source)
    for i in range(5):
        bucket.blob(f"f{i}").upload_from_string(f"v1 {i}".encode())
    first = COMPONENT.backup(settings, store, source)
    bucket.blob("f0").upload_from_string(b"v2")  # a new generation
    bucket.blob("f1").delete()
    second = COMPONENT.backup(settings, store, source)
    second = COMPONENT.validate(settings, store, second, 100)
    policy = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    report = prune(store, "gcs", source, policy, utcnow())
    assert report.removed == [first.backup_id]
    pool = set(store.list(f"pool/gcs/{source}/"))
    assert pool == {
        e.stored_key for e in second.entries
    }  # the old f0 and f1 copies went, the shared ones stayed
    target = unique("restored")
    COMPONENT.restore(settings, store, second, target=target)
    assert {b.name: b.download_as_bytes() for b in gcs.list_blobs(target)} == {
        "f0": b"v2",
        "f2": b"v1 2",
        "f3": b"v1 3",
        "f4": b"v1 4",
    }


def test_a_kms_configured_store_records_the_key_in_the_manifest(gcs: Any, settings: Any) -> None:
    # fake-gcs-server accepts kms_key_name on upload but does not keep it: the manifest is the record.
    key = "projects/demo/locations/us/keyRings/backstop/cryptoKeys/backups"
    store = BackupStore(gcs, settings.backup_bucket, kms_key_name=key)
    manifest = catalog.begin_backup(store, "gcs", unique("src"))
    committed = catalog.commit_backup(store, manifest, [])
    assert store.read_manifest(committed.path).kms_key_name == key


@pytest.mark.flow
def test_prune_flow_and_cli_dry_run_then_prune_both_buckets(
    gcs: Any, settings: Any, saved_settings: str, capsys: Any
) -> None:
    import json

    from backstop_cli.main import main
    from flows.retention import prune_backups

    primary = BackupStore(gcs, settings.backup_bucket)
    secondary = BackupStore(gcs, settings.secondary_bucket)
    source = unique("src")
    backups = five_backups(primary, source)
    mirrored = [make_backup(secondary, source, days, [1]) for days in range(4)]
    # settings default: keep_last 3, daily 7 -> with 5 daily backups every one is kept
    assert main(["--settings", saved_settings, "prune", "--component", "gcs", "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert {r["decision"] for r in planned["rows"]} == {"keep"} and len(planned["rows"]) == 9

    settings.retention.keep_daily = settings.retention.keep_weekly = settings.retention.keep_monthly = 0
    settings.save(saved_settings, overwrite=True)
    assert (
        main(["--settings", saved_settings, "prune", "--component", "gcs", "--source", source, "--dry-run"])
        == 0
    )
    text = capsys.readouterr().out
    assert "backup_id" in text and "decision" in text and "matches no keep rule" in text
    assert "6 kept, 3 would remove" in text  # primary: 3 kept, 2 removed; secondary: 3 kept, 1 removed
    held = [line for line in text.splitlines() if "would be held" in line]  # each note says where
    assert [line.split(":")[0] for line in held] == [
        f"{b} gcs/{source}" for b in (primary.bucket_name, secondary.bucket_name)
    ]
    assert len(index.list_manifests(primary, "gcs", source)) == 5

    assert main(["--settings", saved_settings, "prune", "--component", "gsc", "--dry-run"]) == 2
    assert "unknown component 'gsc'" in capsys.readouterr().err  # a typo is no empty "(nothing)"
    result = prune_backups("gcs", source, False, saved_settings)
    assert result["problems"] == []
    assert len(index.list_manifests(primary, "gcs", source)) == 3
    assert sorted(m.backup_id for m in index.list_manifests(secondary, "gcs", source)) == sorted(
        m.backup_id for m in mirrored[:3]
    )
    assert not any(k.startswith(backups[4].folder) for k in keys(primary))


def test_objects_listed_as_held_are_reported_without_a_delete_attempt() -> None:
    from types import SimpleNamespace

    from tasks.operations.deletes import hold_reason as _hold_reason

    now = utcnow()
    assert _hold_reason(SimpleNamespace(temporary_hold=True), now) == "temporary hold"
    assert _hold_reason(SimpleNamespace(event_based_hold=True), now) == "event-based hold"
    until = now + timedelta(days=3)
    assert (
        _hold_reason(SimpleNamespace(retention_expiration_time=until), now)
        == f"retention policy until {until.isoformat()}"
    )
    assert _hold_reason(SimpleNamespace(retention_expiration_time=now - timedelta(days=1)), now) is None
