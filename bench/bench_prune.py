"""Prune's and re-verification's cost as backups are kept: manifest chunks cut by name, against by count.

`python -m bench.bench_prune [--objects 20000] [--kept 1,10,30] [--chunk 1000] [--write]`

On a fake-gcs-server: the backups of one bucket as a data lake changes it (each day a new folder of
1% of the objects is added after the others, the oldest day's folder expires, and 10 objects
anywhere are rewritten), K of them kept; then `prune` keeping all K (it removes nothing, so what is
timed is its mark phase: reading what every kept backup references, then listing the pool), and
`reverify` of all K with a 1% window (what is timed is comparing every backup with the listing). The
manifests are written by Backstop's own commit, with `--chunk` entries a chunk (the default is
50,000: a smaller one gives a 20,000-object bucket the chunk count of a bucket of millions), once
cut where the names say (`chunk_rows`: backups share the chunks their changes do not touch, and
prune reads a shared chunk once) and once cut every `--chunk / 2` rows (how chunks were cut before:
an object added or removed shifts every chunk after it). The pool holds one small object per
version (uploaded here, not copied from a source). `--write` replaces the section in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import peak_mb, replace_section

MARK = "## Prune with 1 to 30 backups kept: chunks shared by name (bench/bench_prune.py)"
Row = tuple[str, int, str]


def by_count(size: int) -> Any:
    """The chunk cutter before chunks were cut by name: every size // 2 rows (the same average)."""

    def cut(rows: Iterable[Row], _: int) -> Iterator[list[Row]]:
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= max(1, size // 2):
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    return cut


def lake(objects: int, backups: int) -> Iterator[dict[str, int]]:
    """Name -> generation of the bucket on each of `backups` days."""
    rng = random.Random(7)
    per_day = max(1, objects // 100)
    days = list(range(100))
    state = {f"data/day={d:05d}/part-{i:06d}.parquet": 1 for d in days for i in range(per_day)}
    for day in range(100, 100 + backups):
        yield dict(state)
        oldest = days.pop(0)
        state = {n: g for n, g in state.items() if not n.startswith(f"data/day={oldest:05d}/")}
        state |= {f"data/day={day:05d}/part-{i:06d}.parquet": 1 for i in range(per_day)}
        days.append(day)
        for name in rng.sample(sorted(state), 10):
            state[name] += 1


def measure(store: Any, source: str, objects: int, kept: list[int]) -> list[dict[str, Any]]:
    from backstop.core.manifest import ManifestEntry
    from backstop.core.retention import RetentionPolicy
    from tasks.catalog import backups as catalog
    from tasks.catalog import index
    from tasks.operations.prune import prune
    from tasks.storage.google_api import crc32c_b64
    from tasks.storage.parallel import parallel_map

    rows = []
    days = lake(objects, max(kept))
    uploaded: set[str] = set()
    for have, state in enumerate(days, start=1):
        manifest = catalog.begin_backup(store, "gcs", source)
        entries = [
            ManifestEntry(name=n, stored_key=f"pool/gcs/{source}/{g}/{n}", size=len(n), crc32c=crc32c_b64(n.encode()), generation=g)
            for n, g in sorted(state.items())
        ]  # fmt: skip
        new = [(e.stored_key, e.name) for e in entries if e.stored_key not in uploaded]
        parallel_map(lambda kn: store.put_bytes(kn[0], kn[1].encode()), new, 16)
        uploaded.update(k for k, _ in new)
        committed = catalog.commit_backup(store, manifest, entries)
        catalog.record_validation(store, committed, [], len(entries), 0)
        if have not in kept:
            continue
        headers = index.list_manifests(store, "gcs", source)
        refs = [c.sha256 for m in headers for c in m.chunks]
        policy = RetentionPolicy(keep_last=have, keep_daily=0, keep_weekly=0, keep_monthly=0)
        start = time.perf_counter()
        report = prune(store, "gcs", source, policy, datetime.now(UTC), grace_hours=0)
        seconds = time.perf_counter() - start
        assert not report.removed and not report.not_deleted, report
        rows.append(
            {
                "backups_kept": have,
                "objects_each": len(state),
                "chunks_in_manifests": len(refs),
                "distinct_chunks": len(set(refs)),
                "prune_s": round(seconds, 2),
                "reverify_s": round(_reverified(store, source, have), 2),
                "peak_rss_mb": round(peak_mb()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _reverified(store: Any, source: str, backups: int) -> float:
    """Seconds to re-verify the source's `backups` kept backups, a 1% window read back."""
    from blocks.settings import BackstopSettings
    from localdev.platform import PROJECT
    from tasks.engine.reverify import reverify

    settings = BackstopSettings(project=PROJECT, backup_bucket=store.bucket_name)
    start = time.perf_counter()
    report = reverify(settings, store, ["gcs"], share=0.01)
    seconds = time.perf_counter() - start
    (result,) = [r for r in report.sources if r.source == source]
    assert result.backups == backups and not result.found, (result.backups, list(result.damaged)[:3])
    return seconds


def run(objects: int, kept: list[int], chunk: int) -> dict[str, list[dict[str, Any]]]:
    from blocks.clients import storage_client
    from localdev.platform import PROJECT, LocalPlatform
    from tasks.storage import manifests
    from tasks.storage.bucket import BackupStore

    results = {}
    with tempfile.TemporaryDirectory(prefix="backstop-prune-") as state:
        local = LocalPlatform.with_free_ports(state, services=("gcs",), persistent=False)
        os.environ.update(local.up())
        try:
            client = storage_client(PROJECT)
            name_cut = getattr(manifests, "chunk_rows", None)
            modes = [("by name", name_cut), ("by count (before)", by_count(chunk))] if name_cut else []
            for label, cutter in modes or [("code before chunks by name", None)]:
                backups = f"backups-{uuid.uuid4().hex[:8]}"
                client.create_bucket(backups)
                store = BackupStore(client, backups)
                store.chunk_entries = chunk if cutter else chunk // 2  # before: cut every chunk_entries
                manifests.chunk_rows = cutter
                try:
                    print(label, flush=True)
                    results[label] = measure(store, f"lake-{uuid.uuid4().hex[:6]}", objects, kept)
                finally:
                    manifests.chunk_rows = name_cut
        finally:
            local.down()
    return results


def write(results: dict[str, list[dict[str, Any]]], objects: int, chunk: int) -> None:
    from backstop.core.report import markdown_table

    rows = [{"chunks cut": label} | row for label, found in results.items() for row in found]
    first, last = results["by name"][0], results["by name"][-1]
    before = results["by count (before)"][-1]
    body = [
        MARK,
        "",
        f"`python -m bench.bench_prune --objects {objects} --chunk {chunk}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}):"
        " a data lake's bucket (a new day's folder added, the oldest one expired, 10 objects rewritten"
        " between backups), the pool holding every version; prune keeping every backup (its mark phase:"
        " reading what they reference, then listing the pool) and re-verification of all of them (1% read back).",
        "",
        markdown_table(rows),
        "",
        f"- Cut by name, {last['backups_kept']} kept backups hold {last['chunks_in_manifests']:,} chunks of which"
        f" {last['distinct_chunks']:,} differ; prune reads those once each ({last['prune_s']} s, against"
        f" {first['prune_s']} s for one backup), and re-verification compares each once against one"
        f" listing of the bucket ({last['reverify_s']} s, against {first['reverify_s']} s). Cut by count,"
        f" {before['distinct_chunks']:,} of {before['chunks_in_manifests']:,} differ (a shift realigns with"
        f" the chunk size only now and then): prune {before['prune_s']} s, re-verification"
        f" {before['reverify_s']} s.",
        '- "code before chunks by name" is the checkout before this change (`--save` there, `--with`'
        " here): prune read every chunk of every kept backup, twice (before and after listing the pool),"
        " and re-verification listed the bucket and compared every entry once per backup.",
    ]
    replace_section(MARK, "\n".join(body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_prune")
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--kept", default="1,10,30")
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--save", help="write the results as JSON here (e.g. from an older checkout)")
    parser.add_argument("--with", dest="also", help="add the results a --save of another checkout wrote")
    args = parser.parse_args(argv)
    results = run(args.objects, [int(k) for k in args.kept.split(",")], args.chunk)
    if args.save:
        Path(args.save).write_text(json.dumps(results))
    if args.also:
        results |= json.loads(Path(args.also).read_text())
    if args.write:
        write(results, args.objects, args.chunk)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
