"""Validation of a BigQuery backup's Parquet files by their row-group digests (no emulator needed).

A backup made since December 2026 records, per part file, one digest per row group, taken from the
rows as they were read from the source (`group_digests`, tasks/components/bigquery/digest.py).
Right after the backup, validation then checks, for every part file: its bytes whole (the crc32c
Cloud Storage reports for the stored file against the one recorded when it was written), its row
groups against the digests (as many groups, the same row count in each, and the digests adding up
to the table's digest), and a random sample of its row groups, read back by range with the footer
(stored_parquet.fetch_row_groups: `percent` of the file's bytes, not all of them), decoded and hashed against
their digests: at least one a file, `percent` of them. Decoding and hashing every row is what a backup without these
digests gets (restore._check_content), and what a later `backstop validate` still does, beside
its comparison with the source.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from backstop.core.errors import BackstopError
from backstop.core.manifest import ManifestEntry
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


# fetch(index of the part, its entry, the row groups to decode) -> (the crc32c of the stored file's
# bytes, the path of a local Parquet file holding at least its footer and those row groups)
Fetch = Callable[[int, ManifestEntry, list[int]], tuple["str | None", str]]


def check_row_groups(
    entry: ManifestEntry,
    parts: Sequence[ManifestEntry],
    fetch: Fetch,
    percent: float,
    chooser: random.Random | None = None,
) -> tuple[list[str], int]:
    """(problems, rows decoded) of a table's part files against their row-group digests (see the
    module docstring); `fetch` gives each file's crc32c and a local file with the sampled row
    groups (validation: stored_parquet.fetch_row_groups, the footer and those groups only). No problem
    with no row decoded only for an empty table."""
    name, problems, decoded = entry.name, [], 0
    hash_rows = row_hasher(digest_scheme(entry.metadata))
    every: list[str] = []
    for number, part in enumerate(parts):
        groups: list[str] = part.metadata["group_digests"]
        every += groups
        where = f"table {name!r}: Parquet file {part.stored_key}"
        picks = sample_groups(len(groups), percent, chooser)
        try:
            crc32c, path = fetch(number, part, picks)
        except (OSError, ValueError, pa.ArrowException, BackstopError) as exc:
            problems.append(f"{where} unreadable ({exc})")
            continue
        if part.crc32c and crc32c != part.crc32c:
            problems.append(
                f"{where} is stored with another crc32c ({crc32c}) than the backup wrote ({part.crc32c})"
            )
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
        for index in picks:
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
