"""The long steps besides a backup's and a restore's copies run as units on a Dask cluster too
(settings task_runner "dask"): validation's read-back, re-verification's read-back, the secondary
copy and prune's sweep, each
spread over both worker processes of a LocalCluster, with the results a user sees still right."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from backstop.core.errors import ValidationFailed
from blocks.settings import RetentionSettings
from tasks.catalog import index
from tasks.catalog.stored import verify_stored
from tasks.engine.calls import ComponentCalls
from tasks.engine.units import WORK_PREFIX
from tasks.storage.bucket import BackupStore
from tests.conftest import unique

pytestmark = [pytest.mark.flow, pytest.mark.integration, pytest.mark.slow]

OBJECTS, BATCH = 40, 10  # four units a step


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of BATCH items (the batches are made in this process, the flow run's)."""
    from tasks.storage.parallel import Batches

    monkeypatch.setattr(Batches, "first", BATCH)


@pytest.fixture
def proxy(platform: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A proxy in front of the local Cloud Storage that can rot downloads, used by this process and
    by the workers of a cluster started after it."""
    from localdev.servers.throttling_proxy import throttling_proxy

    with throttling_proxy(os.environ["STORAGE_EMULATOR_HOST"], []) as state:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", state.url)
        yield state


def local_cluster() -> Any:
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)


def source_bucket(gcs: Any, prefix: str) -> Any:
    bucket = gcs.create_bucket(unique(prefix))
    for i in range(OBJECTS):
        bucket.blob(f"d{i % 3}/obj {i}.bin").upload_from_string(os.urandom(64 + i))
    return bucket


def on_dask(settings: Any, cluster: Any) -> str:
    """`settings` on the cluster, saved as a block; its name."""
    settings.task_runner, settings.dask_address = "dask", cluster.scheduler_address
    block = unique("settings")
    settings.save(block)
    return block


def units_seen(cluster: Any, run: Any) -> list[dict[str, Any]]:
    """The units (`units.fan_out` tasks) Dask's scheduler saw while `run()` ran."""
    from distributed import Client, get_task_stream

    with Client(cluster) as client, get_task_stream(client) as stream:
        run()
    return [t for t in stream.data if str(t["key"]).startswith("_work_task")]


def no_work_files(store: BackupStore) -> bool:
    return store.list(WORK_PREFIX) == {}


def test_validation_reads_back_in_units_on_both_workers_and_names_a_rotten_object(
    gcs: Any, settings: Any, store: BackupStore, prefect_harness: None, proxy: Any, small_batches: None
) -> None:
    from flows.gcs import backup_gcs
    from flows.validate import validate_backup

    source = source_bucket(gcs, "readsrc")
    with local_cluster() as cluster:
        block = on_dask(settings, cluster)
        read = units_seen(
            cluster, lambda: backup_gcs([source.name], sample_percent=100, settings_block=block)
        )
        manifest = index.load(store, index.read_headers(store, "gcs", source.name)[0])
        assert manifest.status == "validated" and manifest.validation is not None
        assert manifest.validation.read_back == OBJECTS
        # The backup's copies are `_unit_task`s; these are the validation's read-back: every object once.
        assert len(read) == OBJECTS // BATCH
        assert {t["worker"] for t in read} == set(cluster.scheduler_info["workers"])

        rotten = sorted(store.iter_entries(manifest), key=lambda e: e.name)[7]
        proxy.rotten.add(rotten.stored_key)  # its bytes rot; its listing still says what was stored
        with pytest.raises(ValidationFailed) as failed:
            units_seen(cluster, lambda: validate_backup(manifest.backup_id, 100, settings_block=block))

    (problem,) = failed.value.problems  # the one rotten object, by name and where it is stored
    assert problem.startswith(
        f"content differs on read-back: {rotten.name!r} ({store.where(rotten.stored_key)})"
    )
    assert problem.endswith(f"manifest says {rotten.crc32c} / {rotten.size}")
    after = index.read_headers(store, "gcs", source.name)[0]
    assert after.status == "invalid"
    assert no_work_files(store)


def test_reverification_reads_each_object_once_in_units_across_backups_and_marks_every_holder(
    gcs: Any, settings: Any, store: BackupStore, prefect_harness: None, proxy: Any, small_batches: None
) -> None:
    from flows.verify import reverify_backups

    source = source_bucket(gcs, "versrc")
    calls = ComponentCalls("gcs")
    first = calls.backup(settings, store, source.name, validate_after=True)
    second = calls.backup(settings, store, source.name, validate_after=True)  # nothing changed: all shared
    assert {e.stored_key for e in store.iter_entries(first)} == {
        e.stored_key for e in store.iter_entries(second)
    }
    rotten = sorted(store.iter_entries(first), key=lambda e: e.name)[5]
    proxy.rotten.add(rotten.stored_key)
    with local_cluster() as cluster:
        block = on_dask(settings, cluster)
        report: dict[str, Any] = {}
        read = units_seen(
            cluster,
            lambda: report.update(
                reverify_backups(["gcs"], share_percent=100, fail_on_damage=False, settings_block=block)
            ),
        )
        workers = set(cluster.scheduler_info["workers"])

    # Both backups' objects, each read once: as many units as one backup's objects make.
    assert len(read) == OBJECTS // BATCH and {t["worker"] for t in read} == workers
    (row,) = [r for r in report["sources"] if r["source"] == source.name and r["copy"] == "primary"]
    assert (row["backups"], row["objects"], row["read_back"]) == (2, 2 * OBJECTS, 2 * OBJECTS)
    for backup in (first, second):  # each backup holding the rotten object is marked, naming it
        header = next(
            h for h in index.read_headers(store, "gcs", source.name) if h.backup_id == backup.backup_id
        )
        assert header.status == "invalid"
        assert any(
            f"content differs on read-back: {rotten.name!r}" in p
            for p in report["problems"]
            if backup.backup_id in p
        )
    assert no_work_files(store)


def test_the_secondary_copy_runs_in_units_on_both_workers_and_copies_byte_for_byte(
    gcs: Any, settings: Any, store: BackupStore, prefect_harness: None, small_batches: None
) -> None:
    from flows.secondary import copy_backups_to_secondary

    source = source_bucket(gcs, "copysrc")
    taken = ComponentCalls("gcs").backup(settings, None, source.name, validate_after=False)
    secondary = BackupStore(gcs, settings.secondary_bucket)
    with local_cluster() as cluster:
        block = on_dask(settings, cluster)
        rows: list[dict[str, Any]] = []
        copies = units_seen(cluster, lambda: rows.extend(copy_backups_to_secondary("gcs", block)))
        workers = set(cluster.scheduler_info["workers"])

    assert [(r["backup_id"], r["objects"], r["ok"]) for r in rows] == [(taken.backup_id, OBJECTS, True)]
    assert len(copies) == OBJECTS // BATCH and {t["worker"] for t in copies} == workers
    entries = list(store.iter_entries(taken))
    assert len(entries) == OBJECTS
    for entry in entries:
        assert secondary.get_bytes(entry.stored_key) == store.get_bytes(entry.stored_key)
    mirror = secondary.read_manifest(taken.path)
    assert verify_stored(secondary, mirror, 100).problems == []
    assert no_work_files(store) and no_work_files(secondary)


def test_prune_sweeps_in_units_on_both_workers_and_deletes_exactly_what_nothing_references(
    gcs: Any, settings: Any, store: BackupStore, prefect_harness: None, small_batches: None
) -> None:
    from flows.retention import prune_backups

    source = source_bucket(gcs, "prunesrc")
    calls = ComponentCalls("gcs")
    first = calls.backup(settings, None, source.name, validate_after=True)
    for blob in gcs.list_blobs(source.name):  # every object changes: the next backup copies all anew
        blob.upload_from_string(os.urandom(80))
    last = calls.backup(settings, None, source.name, validate_after=True)
    pool = f"pool/gcs/{source.name}/"
    before = set(store.list(pool))
    kept_keys = {e.stored_key for e in store.iter_entries(last) if e.stored_key.startswith(pool)}
    first_files = set(store.list(first.folder)) - {first.path}  # the manifest goes first (phase 1)
    assert len(before) == 2 * OBJECTS and len(kept_keys) == OBJECTS

    settings.retention = RetentionSettings(
        keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0
    )
    with local_cluster() as cluster:
        block = on_dask(settings, cluster)
        results: list[dict[str, Any]] = []
        swept = units_seen(cluster, lambda: results.append(prune_backups("gcs", source.name, False, block)))
        workers = set(cluster.scheduler_info["workers"])

    (summary,) = [s for s in results[0]["summaries"] if s["bucket"] == settings.backup_bucket]
    assert summary["removed"] == [first.backup_id] and results[0]["problems"] == []
    assert len(swept) >= OBJECTS // BATCH and {t["worker"] for t in swept} == workers
    # Exactly the pool objects only the removed backup referenced are gone, and its folder.
    assert set(store.list(pool)) == kept_keys
    assert store.list(first.folder) == {}
    assert summary["deleted_objects"] == len(before - kept_keys) + len(first_files)
    remaining = index.list_manifests(store, "gcs", source.name)
    assert [m.backup_id for m in remaining] == [last.backup_id]
    assert verify_stored(store, remaining[0], 100).problems == []  # the last good backup is whole
    assert no_work_files(store)


def test_steps_running_at_once_share_one_local_cluster_stopped_after_the_last(settings: Any) -> None:
    """With no dask_address, the steps of a flow run that have units at the same time (prune's
    sources, the secondary copies of several backups) send them to one LocalCluster, not one each."""
    from distributed import Client

    from tasks.engine.runners import local_cluster

    settings.dask_workers = 1
    with local_cluster(settings) as first, local_cluster(settings) as second:
        assert first == second
        with Client(first, timeout=10) as client:
            assert len(client.nthreads()) == 1
    with pytest.raises(OSError), Client(first, timeout=2):  # shut down with its last step
        pass
