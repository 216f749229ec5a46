"""Worker scaling: Cloud Storage backup and restore with 1, 2 and 4 Dask workers, side by side in one
run, against Cloud Storage-like latency, and the shared write rate held.

`python -m bench.bench_scaleout [--objects 1500] [--workers 1,2,4] [--latency 0.03] [--copy-threads 16] [--unit-size 1000] [--output FILE]`

- fake-gcs-server (memory backend) behind the local throttling proxy (localdev/servers/throttling_proxy.py)
  run in a process of its own, adding `latency` seconds to every request, as Google's JSON API
  takes tens of milliseconds per copy: the clients' parallelism, not the emulator's CPU, bounds
  the throughput (as far as 2 cores allow);
- per worker count (backup time includes the listing check that lets the restore use the backup,
  sample 0 %): a `LocalCluster` of that many worker processes (1 thread each, so a worker is
  one unit at a time on its copy threads: `--copy-threads`, BACKSTOP_COPY_THREADS, 16 by default;
  fewer per worker with a longer latency puts the limit on the workers, not on the one 2-core
  emulator, as on Google's service, whose capacity is not the limit), settings `task_runner: dask`, the `backup_gcs` and
  `restore_gcs` flows on the Prefect test server; the source seeded once, every backup into a
  fresh backup bucket, every restore into a fresh bucket;
- units: a backup's and a restore's first units hold `--unit-size` objects (Backstop's default 1,000;
  units grow with the work done: a 10M-object bucket makes ~500). A source of a few thousand objects
  makes only a few units of 1,000, too few to keep 4 workers busy, so a smaller unit size stands in
  for a large bucket's many units; every cluster is warmed first (its workers import Backstop's
  modules and run a Prefect task, as a long-lived cluster's have), so the times are the work, not
  the workers' start-up;
- per run, the copy phase's rate too (copies the proxy saw / first to last copy): the part that
  spreads over the workers, without each flow's fixed cost (flow run, plan, listing check);
- the same copies made by a plain 16-thread `copy_blob` loop through the same proxy (one process);
- the rate limit held: one restore on the largest cluster with `gcs_write_rate` set low (50/s), the
  copies the proxy saw per second against that rate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import uuid
from functools import partial
from typing import Any

from bench.results import peak_per_second

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
PROJECT = "backstop-demo"
RAMP_PERIOD = 20 * 60.0


def _proxy_process(upstream: str, latency: float, conn: Any) -> None:
    from localdev.servers.throttling_proxy import throttling_proxy

    with throttling_proxy(upstream, [], latency) as state:
        conn.send(state.url)
        while True:
            command = conn.recv()
            if command == "stop":
                return
            with state.lock:
                conn.send(list(state.copies))
                state.copies.clear()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seed(client: Any, bucket: str, objects: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    target = client.create_bucket(bucket)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: target.blob(f"o/{i:06d}.bin").upload_from_string(os.urandom(1024)), range(objects)
            )
        )


def plain_loop(client: Any, source: str, dest: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client.create_bucket(dest)
    names = [b.name for b in client.list_blobs(source)]
    src = client.bucket(source)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: src.copy_blob(src.blob(n), client.bucket(dest), n), names))


def phase_rate(times: list[float]) -> int | str:
    """Copies per second from the first copy to the last: the part of a run spread over the workers."""
    return round(len(times) / (max(times) - min(times))) if len(times) > 1 else "-"


def _load() -> None:
    import tasks.components.gcs.component  # noqa: F401
    import tasks.components.gcs.restore  # noqa: F401
    import tasks.engine.units  # noqa: F401


def _first_task(seconds: float) -> None:
    time.sleep(seconds)


def _warm(cluster: Any, workers: int) -> None:
    """Make `cluster`'s workers what a long-lived cluster's are: Backstop's unit code imported, and
    a Prefect task run already done in each (a worker's first task run pays Prefect's own start in
    that process: its API client, settings and engine, 1.1-1.6 s measured here with 1-4 workers,
    once per worker process, never again)."""
    from distributed import Client
    from prefect import flow, task

    from tasks.engine.runners import dask_runner

    with Client(cluster) as client:
        client.run(_load)
    first = task(_first_task, name="first-task")

    @flow(name="warm-workers", task_runner=dask_runner(cluster.scheduler_address))
    def warm_workers() -> None:
        # twice the workers, each a while: the scheduler hands every worker one
        for future in [first.submit(0.5) for _ in range(2 * workers)]:
            future.result()

    warm_workers()


def rto_hours(objects: int, rate_per_s: float, start_rate: float = 1000.0) -> float:
    """Hours to restore `objects` at `rate_per_s` (what the workers do), capped by the bucket's ramp:
    `start_rate` writes/s doubling every 20 minutes of sustained load."""
    done, t, cap = 0.0, 0.0, start_rate
    while True:
        speed = min(rate_per_s, cap)
        if done + speed * RAMP_PERIOD >= objects:
            return (t + (objects - done) / speed) / 3600
        done += speed * RAMP_PERIOD
        t += RAMP_PERIOD
        cap *= 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1500)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--copy-threads", type=int, default=16, help="copies in flight per worker")
    parser.add_argument(
        "--unit-size", type=int, default=1000, help="objects in a backup's / restore's first units"
    )
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    os.environ["BACKSTOP_COPY_THREADS"] = str(args.copy_threads)  # the Dask workers' copy threads

    from localdev.platform import LocalPlatform

    state = f"/tmp/backstop-scaleout-{uuid.uuid4().hex[:6]}"
    local = LocalPlatform.with_free_ports(state, services=("gcs",), persistent=False, gcs_server="fake")
    env = local.up()
    os.environ.update(env)
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    parent, child = multiprocessing.Pipe()
    proxy = multiprocessing.Process(target=_proxy_process, args=(emulator, args.latency, child), daemon=True)
    proxy.start()
    proxy_url = parent.recv()
    try:
        return _run(args, counts, emulator, proxy_url, parent)
    finally:
        parent.send("stop")
        proxy.join(5)
        local.down()


def _copies(conn: Any) -> list[tuple[float, str]]:
    conn.send("copies")
    return conn.recv()


def _run(args: Any, counts: list[int], emulator: str, proxy_url: str, conn: Any) -> int:
    from distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from blocks.clients import storage_client
    from blocks.settings import BackstopSettings
    from tasks.components.gcs import component, restore

    component.BATCH_SIZE = restore.UNIT_SIZE = args.unit_size  # planning runs in this process

    direct = storage_client(PROJECT)
    source = unique("scale-src")
    seed(direct, source, args.objects)  # straight to the emulator: seeding is not measured
    os.environ["STORAGE_EMULATOR_HOST"] = proxy_url  # everything below goes through the proxy
    client = storage_client(PROJECT)
    rows: list[dict[str, Any]] = []

    def timed(fn: Any) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    plain_b = timed(lambda: plain_loop(client, source, unique("plain-b")))
    print(f"plain loop: {plain_b:.1f} s", file=sys.stderr, flush=True)
    rows.append({"tool": "plain loop (copy_blob x16, 1 process)", "workers": "-", "backup_s": round(plain_b, 1),
                 "backup_obj_s": round(args.objects / plain_b), "restore_s": "-", "restore_obj_s": "-",
                 "peak_copies_per_s": peak_per_second([t for t, _ in _copies(conn)])})  # fmt: skip
    with prefect_test_harness():
        from flows.gcs import backup_gcs, restore_gcs

        held: dict[str, Any] = {}
        for workers in counts:
            with LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cl:
                _warm(cl, workers)
                bucket = unique("scale-backups")
                direct.create_bucket(bucket)
                settings = BackstopSettings(project=PROJECT, backup_bucket=bucket, task_runner="dask",
                                            dask_address=cl.scheduler_address, validate_sample_percent=0)  # fmt: skip
                block = unique("scale")
                settings.save(block)
                _copies(conn)
                b = timed(partial(backup_gcs, [source], settings_block=block))  # the settings' 0 % sample
                b_times = [t for t, _ in _copies(conn)]
                target = unique("scale-restored")
                r = timed(partial(restore_gcs, source, target=target, settings_block=block))
                r_times = [t for t, bk in _copies(conn) if bk == target]
                b_peak, r_peak = peak_per_second(b_times), peak_per_second(r_times)
                print(
                    f"{workers} worker(s): backup {b:.1f} s, restore {r:.1f} s", file=sys.stderr, flush=True
                )
                rows.append({"tool": "backstop flows (Dask LocalCluster)", "workers": workers, "backup_s": round(b, 1),
                             "backup_obj_s": round(args.objects / b), "restore_s": round(r, 1),
                             "restore_obj_s": round(args.objects / r), "backup_copy_phase_obj_s": phase_rate(b_times),
                             "restore_copy_phase_obj_s": phase_rate(r_times), "peak_copies_per_s": max(b_peak, r_peak)})  # fmt: skip
                if workers == max(counts):  # the rate limit held: the same restore at 50 writes/s
                    settings.gcs_write_rate = 50.0
                    settings.save(block, overwrite=True)
                    target = unique("scale-limited")
                    seconds = timed(partial(restore_gcs, source, target=target, settings_block=block))
                    times = [t for t, bk in _copies(conn) if bk == target]
                    held = {"workers": workers, "rate": 50.0, "seconds": round(seconds, 1), "copies": len(times),
                            "average_per_s": round(len(times) / (max(times) - min(times)), 1) if len(times) > 1 else None,
                            "peak_1s_window": peak_per_second(times)}  # fmt: skip
    _report(args, rows, held)
    return 0


def md_table(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _report(args: Any, rows: list[dict[str, Any]], held: dict[str, Any]) -> None:
    best = {r["workers"]: r for r in rows if r["workers"] != "-"}
    base = best.get(1)
    for r in rows:
        if base and r["workers"] != "-":
            r["backup_speedup"] = f"{base['backup_s'] / r['backup_s']:.2f}x"
            r["restore_speedup"] = f"{base['restore_s'] / r['restore_s']:.2f}x"
    rto = []
    for workers, r in sorted(best.items()):
        speed = float(r["restore_obj_s"])
        rto.append({"workers": workers, "restore objects/s (measured)": round(speed),
                    **{f"{n:,} objects (h)": round(rto_hours(n, speed), 1) for n in (1_000_000, 10_000_000, 100_000_000)}})  # fmt: skip
    text = [
        f"## Worker scaling (bench/bench_scaleout.py): {args.objects:,} objects of 1 KB, {args.latency * 1000:.0f} ms per request, "
        f"{args.copy_threads} copy threads per worker, units of {args.unit_size:,} objects",
        "",
        md_table(rows),
        "",
        "### The shared write rate held",
        "",
        md_table([held]) if held else "(not measured)",
        "",
        "### Restore RTO from these figures (bucket write ramp included: 1,000 writes/s, doubling every 20 min)",
        "",
        md_table(rto),
    ]
    out = "\n".join(text) + "\n"
    print(out)
    if args.output:
        with open(args.output, "w") as f:
            f.write(out)


if __name__ == "__main__":
    raise SystemExit(main())
