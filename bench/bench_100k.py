"""100,000 objects end to end on the local platform: full backup, incremental, lookup by id.

`python -m bench.bench_100k [--objects 100000] [--keep DIR]`

fake-gcs-server's memory backend scans the bucket on every insert (loading N objects ~ N^2: ~3 h for
100,000), so this run uses its filesystem backend (`-backend filesystem`, constant-time inserts) and
preloads the source from a data folder (`-data DIR`, one sub-folder per bucket), written here as
plain files. Costs of that mode, measured and reported: the server's start (it copies the data folder
into its root) and its listings (it walks the bucket's folder for every page). The component runs
as a script would (threads, no flow run); its own peak RSS is reported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import uuid
from pathlib import Path

PROJECT = "backstop-demo"


def write_data(root: Path, bucket: str, objects: int) -> None:
    for i in range(objects):
        folder = root / bucket / f"p{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"o{i:06d}.bin").write_bytes(os.urandom(64))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--keep", help="work folder (default: a new one under /tmp)")
    args = parser.parse_args(argv)
    from localdev.platform import fake_gcs_binary, free_port, http_ok

    work = Path(args.keep or f"/tmp/backstop-100k-{uuid.uuid4().hex[:6]}")
    data, root, source = work / "data", work / "root", "src100k"
    started = time.perf_counter()
    if not (data / source).exists():
        write_data(data, source, args.objects)
    print(f"data folder: {time.perf_counter() - started:.0f} s", flush=True)
    port = free_port()
    argv_ = [str(fake_gcs_binary()), "-backend", "filesystem", "-filesystem-root", str(root), "-data", str(data),
             "-host", "127.0.0.1", "-port", str(port), "-scheme", "http", "-log-level", "warn"]  # fmt: skip
    started = time.perf_counter()
    server = subprocess.Popen(argv_, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not http_ok(f"http://127.0.0.1:{port}/storage/v1/b"):
            time.sleep(2)
        print(f"server loaded {args.objects:,} objects: {time.perf_counter() - started:.0f} s", flush=True)
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        _run(source)
    finally:
        server.terminate()
        server.wait(10)
    return 0


def _run(source: str) -> None:
    from bench.results import peak_mb
    from blocks.clients import storage_client
    from blocks.settings import BackstopSettings
    from tasks.catalog import backups as catalog
    from tasks.engine.calls import ComponentCalls
    from tasks.storage.bucket import open_store

    client = storage_client(PROJECT)
    bucket = f"bk100k-{uuid.uuid4().hex[:6]}"
    client.create_bucket(bucket)
    settings = BackstopSettings(project=PROJECT, backup_bucket=bucket)
    gcs = ComponentCalls("gcs")
    t = time.perf_counter()
    full = gcs.backup(settings, None, source)
    print(
        f"full backup: {full.entry_count:,} objects, {time.perf_counter() - t:.0f} s, peak {peak_mb():.0f} MB"
    )
    t = time.perf_counter()
    inc = gcs.backup(settings, None, source)
    print(
        f"incremental: copied {inc.source_state['copied']}, {time.perf_counter() - t:.0f} s, peak {peak_mb():.0f} MB"
    )
    t = time.perf_counter()
    found = catalog.resolve_backup(
        open_store(settings), "gcs", source, inc.backup_id, None, validated_only=False
    )
    print(f"lookup by id {found.backup_id}: {1000 * (time.perf_counter() - t):.0f} ms", flush=True)
    t = time.perf_counter()
    report = gcs.restore(settings, None, inc, target=f"rs100k-{uuid.uuid4().hex[:6]}")
    print(
        f"restore: {report.created:,} objects, {time.perf_counter() - t:.0f} s, peak {peak_mb():.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
