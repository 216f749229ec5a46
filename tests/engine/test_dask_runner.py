"""Backup units on a Dask cluster (settings task_runner "dask"): a Cloud Storage backup flow whose
object batches run on the worker processes of a LocalCluster, restored byte for byte."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from flows.gcs import backup_gcs, restore_gcs
from tests.conftest import unique

pytestmark = [pytest.mark.flow, pytest.mark.integration, pytest.mark.slow]

OBJECTS, BATCH = 40, 10  # four units


@pytest.fixture
def cluster(platform: Any) -> Iterator[Any]:
    """Two worker processes; started after the platform, so they inherit the emulator endpoints."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


def test_gcs_backup_and_restore_units_run_on_dask_workers_and_restore_byte_for_byte(
    gcs: Any, settings: Any, prefect_harness: None, cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client, get_task_stream

    from tasks.components.gcs import component as gcs_tasks
    from tasks.components.gcs import restore as gcs_restore

    monkeypatch.setattr(gcs_tasks, "BATCH_SIZE", BATCH)  # planning runs in this process
    monkeypatch.setattr(gcs_restore, "UNIT_SIZE", BATCH)
    source = gcs.create_bucket(unique("dasksrc"))
    for i in range(OBJECTS):
        blob = source.blob(f"d{i % 3}/obj {i}.bin")
        blob.metadata = {"n": str(i)}
        blob.upload_from_string(os.urandom(64 + i), content_type="application/x-test")
    settings.task_runner, settings.dask_address = "dask", cluster.scheduler_address
    block = unique("settings")
    settings.save(block)

    with Client(cluster) as client, get_task_stream(client) as stream:
        rows = backup_gcs([source.name], settings_block=block)
        worker_pids = set(client.run(os.getpid).values())
    assert rows[0]["status"] == "validated" and rows[0]["objects"] == OBJECTS

    # What Dask's scheduler saw: one task per batch, spread over both worker processes (not this one).
    units = [t for t in stream.data if str(t["key"]).startswith("_unit_task")]
    assert len(units) == OBJECTS // BATCH
    assert {t["worker"] for t in units} == set(cluster.scheduler_info["workers"])
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids

    # The restore's copies are units too: one per batch, over both worker processes.
    target = unique("dasktarget")
    with Client(cluster) as client, get_task_stream(client) as stream:
        restore_gcs(source.name, target=target, settings_block=block)
    restored = [t for t in stream.data if str(t["key"]).startswith("_work_task")]
    assert len(restored) == OBJECTS // BATCH
    assert {t["worker"] for t in restored} == set(cluster.scheduler_info["workers"])

    def contents(bucket: str) -> dict[str, Any]:
        return {b.name: (b.download_as_bytes(), b.content_type, b.metadata) for b in gcs.list_blobs(bucket)}

    assert contents(target) == contents(source.name)


def test_a_pickled_context_reopens_its_store_and_leaves_its_log_behind(store: Any, settings: Any) -> None:
    """What a unit task gets travels to another process: the store as its bucket (a new client there),
    the log callback (this process's terminal) replaced by the run logger."""
    import pickle

    from tasks.engine.protocol import Context, run_log

    store.put_bytes("probe/one", b"travelled")
    said: list[str] = []
    ctx = Context(settings, store, None, said.append)

    copy = pickle.loads(pickle.dumps(ctx))
    assert copy.store.client is not store.client and copy.store.bucket_name == store.bucket_name
    assert copy.store.get_bytes("probe/one") == b"travelled"
    assert copy.settings == settings and copy.log is run_log and ctx.log == said.append


def test_an_unreachable_dask_scheduler_fails_the_backup_with_an_error_naming_it(
    gcs: Any,
    settings: Any,
    prefect_harness: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    import dask

    from backstop_cli.main import main
    from localdev.platform import free_port

    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))
    source = gcs.create_bucket(unique("daskgone"))
    source.blob("a.txt").upload_from_string(b"a")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    settings.task_runner, settings.dask_address = "dask", address
    block = unique("settings")
    settings.save(block)

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["--settings", block, "backup", "gcs", "--bucket", source.name, "--json"])
    assert code == 2
    assert f"Dask cluster at {address} (settings dask_address) not reachable" in capsys.readouterr().err
    assert main(["--settings", block, "list", "--component", "gcs", "--source", source.name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backups"] == []  # no manifest: the backup did not happen


def test_dask_workers_together_stay_under_the_buckets_write_rate_while_it_ramps(
    gcs: Any, settings: Any, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker processes restore into one bucket through a proxy that records every copy: the
    writes they make together, counted per window at the proxy, stay at or under the rate the bucket
    allows at that moment (one limit on the Prefect server, not one per process), and the rate ramps."""
    import math

    from distributed import Client, LocalCluster, get_task_stream

    from localdev.servers.throttling_proxy import throttling_proxy
    from tasks.components.gcs import restore as gcs_restore
    from tasks.engine.calls import ComponentCalls
    from tasks.storage import shared_limit

    rate, period, objects = 10.0, 3.0, 150
    monkeypatch.setattr(shared_limit, "PERIOD", period)  # the ramp doubles after 3 s, not 20 min
    monkeypatch.setattr(shared_limit, "CHECK_SECONDS", 0.5)
    monkeypatch.setattr(gcs_restore, "UNIT_SIZE", 15)
    source = gcs.create_bucket(unique("ratesrc"))
    for i in range(objects):
        source.blob(f"r/{i:04d}").upload_from_string(os.urandom(32))
    settings.gcs_write_rate = rate
    # Backed up before the proxy: only the restore's copies are counted.
    taken = ComponentCalls("gcs").backup(settings, None, source.name, validate_after=True)
    assert taken.status == "validated"

    with throttling_proxy(os.environ["STORAGE_EMULATOR_HOST"], []) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)  # this process and the workers started below
        with LocalCluster(
            # two units in flight a worker: no gap between units (a loaded machine's Dask and Prefect
            # overhead) leaves the limit idle long enough to restart the ramp's period
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            dashboard_address=None,
        ) as cluster:
            settings.task_runner, settings.dask_address = "dask", cluster.scheduler_address
            block = unique("settings")
            settings.save(block)
            target = unique("ratetarget")
            with Client(cluster) as client, get_task_stream(client) as stream:
                restore_gcs(source.name, target=target, settings_block=block)
            workers = set(cluster.scheduler_info["workers"])
        ramped = shared_limit.read_rate(target)

    assert sorted(b.name for b in gcs.list_blobs(target)) == sorted(f"r/{i:04d}" for i in range(objects))
    units = [t for t in stream.data if str(t["key"]).startswith("_work_task")]
    assert {t["worker"] for t in units} == workers and len(workers) == 2  # both wrote
    times = sorted(t for t, bucket in proxy.copies if bucket == target)
    assert len(times) == objects
    start, window = times[0], 2.0
    # The burst the limit holds, and one block each of the two workers may hold unused.
    slack = (shared_limit.BURST_BLOCKS + 2) * shared_limit.block_for(
        rate * 2 ** math.ceil((times[-1] - start) / period)
    )
    for first in times:  # every window that starts at a copy
        inside = sum(1 for t in times if first <= t < first + window)
        allowed = rate * 2 ** math.floor((first + window - start) / period)  # the ramp's rate by then
        assert inside <= allowed * window + slack, (first - start, inside, allowed)
    assert ramped is not None and ramped[0] > rate, ramped  # it ramped: sustained load, no throttle
