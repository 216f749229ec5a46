"""Validation of a BigQuery backup's Parquet files by their row-group digests (no emulator needed).

A backup made since December 2026 records, per part file, one digest per row group, taken from the
rows as they were read from the source (`group_digests`, tasks/components/bigquery/digest.py).
Right after the backup, validation then checks, for every part file: its bytes whole (crc32c of
the downloaded file against the one recorded when it was written), its row groups against the
digests (as many groups, the same row count in each, and the digests adding up to the table's
digest), and a random sample of its row groups decoded and hashed against their digests: at least
one a file, `percent` of them. Decoding and hashing every row is what a backup without these
digests gets (restore._check_content), and what a later `backstop validate` still does, beside
its comparison with the source.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from backstop.core.manifest import ManifestEntry
from tasks.components.bigquery import data as bqio
from tasks.components.bigquery.digest import combined, digest_scheme, parse_digest, row_hasher
from tasks.components.bigquery.schema import TableDigest


def has_group_digests(entry: ManifestEntry, parts: Sequence[ManifestEntry]) -> bool:
    """Whether a table's backup can be checked by row groups: Parquet, a digest, every part's groups."""
    meta = entry.metadata
    return (
        str(meta.get("format") or "parquet") == "parquet"
        and bool(meta.get("content_digest"))
        and all(isinstance(p.metadata.get("group_digests"), list) for p in parts)
    )


def sample_groups(count: int, percent: float, chooser: random.Random | None = None) -> list[int]:
    """Row groups of a file to decode: a random `percent` of `count`, at least one (none of none)."""
    if count <= 0:
        return []
    chosen = min(count, max(1, round(count * percent / 100)))
    return sorted((chooser or random.SystemRandom()).sample(range(count), chosen))


def check_row_groups(
    entry: ManifestEntry,
    parts: Sequence[ManifestEntry],
    paths: Sequence[str],
    percent: float,
    chooser: random.Random | None = None,
) -> tuple[list[str], int]:
    """(problems, rows decoded) of a table's downloaded part files (`paths`, in `parts` order)
    against their row-group digests (see the module docstring). No problem with no row decoded
    only for an empty table."""
    name, problems, decoded = entry.name, [], 0
    hash_rows = row_hasher(digest_scheme(entry.metadata))
    every: list[str] = []
    for part, path in zip(parts, paths, strict=True):
        groups: list[str] = part.metadata["group_digests"]
        every += groups
        where = f"table {name!r}: Parquet file {part.stored_key}"
        if part.crc32c and bqio.file_crc32c(path) != part.crc32c:
            problems.append(f"{where} read back with another crc32c than the backup wrote ({part.crc32c})")
            continue
        try:
            meta = pq.read_metadata(path)
            held = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        except (OSError, pa.ArrowException) as exc:
            problems.append(f"{where} unreadable ({exc})")
            continue
        recorded = [parse_digest(g).rows for g in groups]
        if held != recorded:
            problems.append(
                f"{where} holds {len(held)} row groups of {sum(held)} rows, the backup wrote "
                f"{len(recorded)} of {sum(recorded)} (or groups of other sizes)"
            )
            continue
        reader = pq.ParquetFile(path)
        for index in sample_groups(len(groups), percent, chooser):
            digest = TableDigest()
            try:
                for batch in reader.iter_batches(batch_size=65_536, row_groups=[index]):
                    digest.add(hash_rows(batch))
            except (OSError, pa.ArrowException) as exc:
                problems.append(f"{where}: row group {index} unreadable ({exc})")
                continue
            decoded += digest.rows
            if digest.hexdigest != groups[index]:
                problems.append(
                    f"{where}: row group {index} holds other rows than the backup read "
                    f"(content digest {digest.hexdigest}, manifest says {groups[index]})"
                )
    expected = entry.metadata.get("content_digest")
    if not problems and combined(every) != expected:
        problems.append(
            f"table {name!r}: the row groups' digests add up to {combined(every)}, the table's is {expected}"
        )
    if not problems and not decoded and parse_digest(str(expected)).rows:
        problems.append(f"table {name!r}: no row was decoded to check the backup's content")
    return problems, decoded
