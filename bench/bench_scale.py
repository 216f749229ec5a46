"""Scaling benchmark: peak RSS and time of plan + manifest write + manifest read + validate.

`python -m bench.bench_scale [--sizes 10000,100000,1000000,10000000] [--write]`

Each size runs in its own process (so peak RSS is that size's alone) on a synthetic listing of N
objects, through Backstop's real code with no network: the streaming `plan_backup` (an incremental
against a previous backup of the same N objects, its chunked manifest streamed from disk, every
object reused), the new manifest written as the store writes it (entries spooled to disk, then
content-addressed chunks of 50,000, then the header that seals them), read back as readers stream
it (chunk by chunk, each checked against its digest), and `verify_stored` (validation's size and
crc32c comparison) against a streamed listing of the pool. The stored chunks live in a temporary
folder, so they do not count as memory. `--write` replaces the "Scaling" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backstop.core.manifest import CHUNK_ENTRIES
from bench.results import peak_mb, replace_section
from tasks.catalog import index
from tasks.storage.bucket import BackupStore

NOTES = [
    "Peak RSS is flat in the object count: planning merges the source listing with the previous "
    "manifest's chunks as two streams, entries go to a spool on disk (SQLite) and come back in name "
    "order a chunk at a time, and validation spools the pool's listing and streams the entries. What "
    "stays in memory is a few chunks of 50,000 entries (two being parsed, one being written).",
    "Time grows linearly (about 10-30 us per object and step on this 2-core machine, more when other "
    "work shares it): a 10M-object incremental plans in minutes, with no copy to make.",
]
MARK = "## Scaling: plan + manifest write + read + validate, synthetic listings (bench/bench_scale.py)"


class DiskStore:
    """What the manifest code needs of a backup bucket, over a temporary folder (so the stored
    chunks do not count in this process's memory), with `BackupStore`'s own manifest methods."""

    _write_entries = BackupStore._write_entries
    iter_entries = BackupStore.iter_entries

    def __init__(self, root: str, pool: Any) -> None:
        self.root, self.pool, self.chunk_entries = Path(root), pool, CHUNK_ENTRIES

    def where(self, key: str = "") -> str:
        return f"disk://{key}"

    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def get_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def iter_list(self, prefix: str) -> Any:
        """The pool's listing, generated page by page as a bucket listing streams (never held)."""
        return self.pool() if prefix.startswith("pool/") else iter(())


def one(n: int) -> dict[str, Any]:
    """Measure one size in this process: an incremental backup of `n` objects, all unchanged."""
    import tempfile
    from types import SimpleNamespace

    from backstop.core.manifest import BackupManifest, new_backup_id, utcnow
    from tasks.catalog.stored import verify_stored
    from tasks.components.gcs.plan import PlanCounts, SourceObject, entry_for, plan_backup, pool_key
    from tasks.storage.spool import EntrySpool

    bucket = "big-bucket"
    times: dict[str, float] = {}
    base = peak_mb()

    def listing() -> Any:  # the source bucket's listing, in name order, as the client yields it
        for i in range(n):
            yield SourceObject(
                f"data/{i // 1000:05d}/part-{i:08d}.parquet",
                1_700_000_000_000_000 + i,
                1000 + i % 977,
                "AAAAAA==",
            )

    def pool() -> Any:  # what the pool holds: every object's copy
        for o in listing():
            yield SimpleNamespace(
                name=pool_key(bucket, o.name, o.generation), size=o.size, crc32c=o.crc32c, kms_key_name=None
            )

    def new_manifest() -> BackupManifest:
        started = utcnow()
        return BackupManifest(
            backup_id=new_backup_id(started), component="gcs", source=bucket, started_at=started
        )

    with tempfile.TemporaryDirectory(prefix="backstop-scale-") as root:
        store: Any = DiskStore(root, pool)
        rows = (
            (o.name, o.size, entry_for(o, pool_key(bucket, o.name, o.generation)).model_dump_json())
            for o in listing()
        )
        previous, _ = store._write_entries(new_manifest(), rows)  # the previous backup, on disk

        t = time.perf_counter()
        counts, spool = PlanCounts(), EntrySpool()
        units = list(plan_backup(listing(), bucket, store.iter_entries(previous), spool.add, counts))
        times["plan_s"] = time.perf_counter() - t
        assert counts.reused == n and not units

        t = time.perf_counter()
        header, chunk_keys = store._write_entries(new_manifest(), spool.rows())
        header_bytes = header.sealed().to_bytes()
        times["write_s"] = time.perf_counter() - t
        spool.close()

        t = time.perf_counter()
        read = BackupManifest.from_bytes(header_bytes)
        assert sum(1 for _ in store.iter_entries(read)) == n == read.entry_count
        times["read_s"] = time.perf_counter() - t

        t = time.perf_counter()
        check = verify_stored(store, read, sample_percent=0)
        times["validate_s"] = time.perf_counter() - t
        assert not check.problems and check.checked == n
        sizes = [(Path(root) / k).stat().st_size for k in chunk_keys] or [len(header_bytes)]
    return {
        "objects": n,
        **{k: round(v, 2) for k, v in times.items()},
        "header_kb": round(len(header_bytes) / 1024, 1),
        "chunks": len(chunk_keys),
        "chunk_mb_max": round(max(sizes) / 2**20, 1),
        "peak_rss_mb": round(peak_mb()),
        "baseline_rss_mb": round(base),
    }


def find_by_id(pooled_counts: list[int]) -> list[dict[str, Any]]:
    """On fake-gcs-server: time to find a backup by id as the pool grows, through the catalog
    index and (for comparison) by listing the whole bucket as the previous version did.

    Each pool size gets a fresh server (memory backend) whose backup bucket fake-gcs-server loads
    at start from a `-data` folder of that many pooled objects: one load inside the server instead
    of an HTTP upload per object (the server's insert is linear in the bucket's size either way). The
    backup is then taken through the API as usual. Beside the times: the requests one lookup makes,
    and what the emulator itself costs per request at that size (reading one small object, an empty
    listing), both of which grow with the bucket there, not on Cloud Storage.
    """
    import os
    import statistics
    import subprocess
    import tempfile
    import uuid

    from blocks.clients import storage_client
    from blocks.settings import BackstopSettings
    from localdev.platform import PROJECT, fake_gcs_binary, free_port, http_ok
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gcs")
    from tasks.storage.bucket import BackupStore

    def timed(fn: Any) -> float:
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t)
        return round(statistics.median(runs) * 1000, 1)

    def measure(count: int, state: str) -> dict[str, Any]:
        source, backups = f"src-{uuid.uuid4().hex[:8]}", f"backups-{uuid.uuid4().hex[:8]}"
        pool = Path(state, "data", backups, "pool", "gcs", "other")
        for i in range(count):
            (pool / str(i)).mkdir(parents=True)
            (pool / str(i) / "obj").write_bytes(b"y")
        port = free_port()
        command = [str(fake_gcs_binary()), "-backend", "memory", "-data", str(Path(state, "data")),
                   "-host", "127.0.0.1", "-port", str(port), "-scheme", "http", "-log-level", "warn",
                   "-public-host", f"127.0.0.1:{port}"]  # fmt: skip
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.perf_counter()
            while not http_ok(f"http://127.0.0.1:{port}/storage/v1/b?project={PROJECT}"):
                if server.poll() is not None:
                    raise RuntimeError(f"fake-gcs-server exited ({server.returncode}) loading {count}")
                time.sleep(0.5)
            load_s = time.perf_counter() - started
            os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
            client = storage_client(PROJECT)
            client.create_bucket(source)
            for i in range(5):
                client.bucket(source).blob(f"o{i}").upload_from_string(b"x" * 100)
            store = BackupStore(client, backups)
            backup_id = COMPONENT.backup(
                BackstopSettings(project=PROJECT, backup_bucket=backups), store, source
            ).backup_id
            requests: list[str] = []
            client._http.hooks["response"].append(lambda r, *a, **k: requests.append(r.request.url))
            index.find(store, backup_id)
            client._http.hooks["response"].clear()

            def listing_whole_bucket() -> None:  # what find_manifest did before the index
                assert any(k.endswith(f"/{backup_id}/manifest.json") for k in store.list(""))

            return {
                "pooled_objects": count,
                "find_by_id_index_ms": timed(lambda: index.find(store, backup_id)),
                "requests_per_find": len(requests),
                "one_read_ms": timed(lambda: store.get_bytes("pool/gcs/other/0/obj")),
                "empty_listing_ms": timed(lambda: store.list("no-such-prefix/")),
                "find_by_listing_bucket_ms": timed(listing_whole_bucket),
                "server_load_s": round(load_s, 1),
            }
        finally:
            server.terminate()
            server.wait(timeout=30)

    rows = []
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        for count in pooled_counts:
            with tempfile.TemporaryDirectory(prefix="backstop-scale-") as state:
                rows.append(measure(count, state))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if saved is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved
    return rows


def run(sizes: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        print(f"scale: {n:,} objects ...", flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_scale", "--one", str(n)], capture_output=True, text=True
        )
        if out.returncode != 0:
            rows.append({"objects": n, "error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]})
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        if rows and "peak_rss_mb" in rows[-1]:
            prev = rows[-1]
            row["rss_growth_x"] = round(row["peak_rss_mb"] / prev["peak_rss_mb"], 2)
            total = sum(row[k] for k in ("plan_s", "write_s", "read_s", "validate_s"))
            prev_total = sum(prev[k] for k in ("plan_s", "write_s", "read_s", "validate_s"))
            row["time_growth_x"] = round(total / max(prev_total, 1e-9), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def write(
    rows: list[dict[str, Any]], notes: list[str], find_rows: list[dict[str, Any]] | None = None
) -> None:
    from backstop.core.report import markdown_table

    columns = list(dict.fromkeys(k for row in rows for k in row))  # growth columns start at row 2
    rows = [{k: row.get(k, "") for k in columns} for row in rows]
    body = [MARK, "", f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.", "", markdown_table(rows), ""]
    if find_rows:
        body += ["### Finding a backup by id as the pool grows (fake-gcs-server, median of 5)", ""]
        body += [markdown_table(find_rows), ""]
    replace_section(MARK, "\n".join(body + [f"- {n}" for n in notes]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--pooled", default="1000,10000", help="pool sizes for the find-by-id timing ('' skips it)"
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the Scaling section of bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    rows = run([int(s) for s in args.sizes.split(",") if s])
    find_rows = find_by_id([int(s) for s in args.pooled.split(",") if s]) if args.pooled else []
    if args.write:
        write(rows, NOTES, find_rows)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
