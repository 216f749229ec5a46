"""Peak RSS of an incremental Cloud Storage backup as the number of kept backups grows.

`python -m bench.bench_kept [--objects 5000] [--kept 1,30] [--write]`

On a fake-gcs-server: a bucket of N objects is backed up until K backups are kept, then one more
incremental backup (every object unchanged) runs in a fresh process whose peak RSS is measured.
Finding the previous backup reads the catalog index (headers) and streams one manifest's entries:
the other kept backups must cost nothing. `--write` replaces the section in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from bench.results import peak_mb, replace_section

MARK = "## Incremental backup: peak RSS with 1 and 30 backups kept (bench/bench_kept.py)"


def one_backup(source: str, backups: str) -> dict[str, Any]:
    """One incremental backup in this process (the platform's endpoints are in the environment)."""
    from blocks.clients import storage_client
    from blocks.settings import BackstopSettings
    from localdev.platform import PROJECT
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gcs")
    from tasks.storage.bucket import BackupStore

    store = BackupStore(storage_client(PROJECT), backups)
    settings = BackstopSettings(project=PROJECT, backup_bucket=backups)
    base = peak_mb()
    t = time.perf_counter()
    manifest = COMPONENT.backup(settings, store, source, validate_after=False)
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "copied": manifest.source_state["copied"],
        "reused": manifest.source_state["reused"],
        "peak_rss_mb": round(peak_mb()),
        "rss_before_mb": round(base),
    }


def run(objects: int, kept: list[int]) -> list[dict[str, Any]]:
    from blocks.clients import storage_client
    from blocks.settings import BackstopSettings
    from localdev.platform import PROJECT, LocalPlatform
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gcs")
    from tasks.storage.bucket import BackupStore
    from tasks.storage.parallel import parallel_map

    rows = []
    with tempfile.TemporaryDirectory(prefix="backstop-kept-") as state:
        local = LocalPlatform.with_free_ports(state, services=("gcs",), persistent=False)
        env = local.up()
        os.environ.update(env)
        try:
            client = storage_client(PROJECT)
            source, backups = f"src-{uuid.uuid4().hex[:8]}", f"backups-{uuid.uuid4().hex[:8]}"
            client.create_bucket(source)
            client.create_bucket(backups)
            names = [f"data/{i // 100:04d}/part-{i:06d}.bin" for i in range(objects)]
            parallel_map(
                lambda n: client.bucket(source).blob(n).upload_from_string(n.encode() * 4), names, 16
            )
            store = BackupStore(client, backups)
            settings = BackstopSettings(project=PROJECT, backup_bucket=backups)
            have = 0
            for count in sorted(kept):
                while have < count:
                    COMPONENT.backup(settings, store, source, validate_after=False)
                    have += 1
                out = subprocess.run(
                    [sys.executable, "-m", "bench.bench_kept", "--one", source, backups],
                    capture_output=True, text=True, env=os.environ | env, check=True,
                )  # fmt: skip
                row = {"objects": objects, "backups_kept": count} | json.loads(out.stdout.splitlines()[-1])
                have += 1
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            local.down()
    return rows


def write(rows: list[dict[str, Any]]) -> None:
    from backstop.core.report import markdown_table

    growth = rows[-1]["peak_rss_mb"] / max(rows[0]["peak_rss_mb"], 1) if len(rows) > 1 else 1.0
    body = [
        MARK,
        "",
        markdown_table(rows),
        "",
        f"- Peak RSS with {rows[-1]['backups_kept']} kept is {growth:.2f}x that with "
        f"{rows[0]['backups_kept']} kept: the previous backup is found through the catalog index "
        "(headers only) and only its manifest's entries are streamed.",
    ]
    replace_section(MARK, "\n".join(body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_kept")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--kept", default="1,30")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_backup(*args.one)))
        return 0
    rows = run(args.objects, [int(k) for k in args.kept.split(",")])
    if args.write:
        write(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
