"""Row-group digests (tasks/components/bigquery/digest.py GroupDigests) and the validation right after
a backup that checks a sample of row groups against them (tasks/components/bigquery/rowgroups.py):
the digests follow the files' row groups; a changed value in a sampled group is named, one in a
group beyond the sample is caught by the file's crc32c."""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backstop.core.manifest import ManifestEntry
from tasks.components.bigquery import data as bigquery_io
from tasks.components.bigquery.digest import DIGEST_SCHEME, combined, row_hashes
from tasks.components.bigquery.rowgroups import Fetch, check_row_groups, has_group_digests, sample_groups
from tasks.components.bigquery.schema import TableDigest

pytestmark = pytest.mark.unit
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


class Picks(random.Random):
    """A chooser that samples the given row groups where a file has them, else its first (the real
    one is random)."""

    def __init__(self, *groups: int) -> None:
        super().__init__(0)
        self.groups = list(groups)

    def sample(self, population: Any, k: int, **_: Any) -> list[int]:  # type: ignore[override]
        return ([g for g in self.groups if g in population] or list(population))[:k]


def whole_files(paths: list[str]) -> Fetch:
    """check_row_groups' fetch over complete local part files (`paths`, in the parts' order)."""

    def fetch(index: int, part: ManifestEntry, groups: list[int]) -> tuple[str | None, str]:
        return bigquery_io.file_crc32c(paths[index]), paths[index]

    return fetch


def digest_of(table: pa.Table) -> str:
    digest = TableDigest()
    digest.add(row_hashes(table))
    return digest.hexdigest


def backed_up(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, rows: int = 900) -> tuple[ManifestEntry, list[ManifestEntry], list[str]]:  # fmt: skip
    """A table written as the backup writes it: parts of 400 rows, the last of 100, in row groups
    of at least 100 rows gathered from batches of 30 (120 + 120 + 120 + 40 in the first part)."""
    monkeypatch.setattr(bigquery_io, "GROUP_ROWS", 100)
    table = pa.table({"id": pa.array(range(rows), pa.int64()), "name": [f"user-{i}" for i in range(rows)]})
    files: list[tuple[int, str, int]] = []
    digest = bigquery_io.write_parquet_parts(
        iter(table.to_batches(max_chunksize=30)), str(tmp_path), lambda i, p, n: files.append((i, p, n)), part_rows=400
    )  # fmt: skip
    meta = {"kind": "table", "schema": [], "content_digest": digest.hexdigest, "digest_scheme": DIGEST_SCHEME}
    parts = [
        ManifestEntry(name="events" if i == 0 else f"events/part-{i:05d}", stored_key=f"tables/events/part-{i:05d}.parquet",
                      size=1, crc32c=bigquery_io.file_crc32c(path), rows=n,
                      metadata=(meta if i == 0 else {"kind": "part", "table": "events"}) | {"group_digests": digest.parts[i]})
        for i, path, n in files
    ]  # fmt: skip
    return parts[0], parts, [path for _, path, _ in files]


def test_row_group_digests_follow_each_files_row_groups_and_add_up_to_the_table(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, parts, paths = backed_up(tmp_path, monkeypatch)
    assert [p.rows for p in parts] == [400, 400, 100]
    for part, path in zip(parts, paths, strict=True):
        reader = pq.ParquetFile(path)
        groups = [digest_of(reader.read_row_group(g)) for g in range(reader.num_row_groups)]
        assert part.metadata["group_digests"] == groups and len(groups) > 1 or part.rows == 100
    assert combined(g for p in parts for g in p.metadata["group_digests"]) == entry.metadata["content_digest"]
    assert has_group_digests(entry, parts)
    problems, decoded = check_row_groups(entry, parts, whole_files(paths), 5.0)  # one group of each file
    assert problems == [] and 3 * 40 <= decoded <= 3 * 120


def test_a_changed_value_in_a_sampled_row_group_is_named_and_beyond_the_sample_the_crc32c_catches_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, parts, paths = backed_up(tmp_path, monkeypatch)
    reader = pq.ParquetFile(paths[1])
    groups = [reader.read_row_group(g) for g in range(reader.num_row_groups)]
    names = groups[2].column("name").to_pylist()
    names[5] = "changed"
    groups[2] = groups[2].set_column(1, "name", pa.array(names))
    with pq.ParquetWriter(paths[1], groups[0].schema, compression="zstd") as writer:
        for group in groups:
            writer.write_table(group, row_group_size=group.num_rows)

    problems, _ = check_row_groups(entry, parts, whole_files(paths), 5.0, Picks(0))  # group 2 not decoded
    assert len(problems) == 1 and "part-00001" in problems[0] and "crc32c" in problems[0]

    forged = parts[1].model_copy(update={"crc32c": bigquery_io.file_crc32c(paths[1])})  # bytes made to match
    parts = [parts[0], forged, parts[2]]
    assert check_row_groups(entry, parts, whole_files(paths), 5.0, Picks(0))[0] == []  # the sample missed it
    problems, _ = check_row_groups(entry, parts, whole_files(paths), 5.0, Picks(2))
    assert len(problems) == 1 and "row group 2 holds other rows than the backup read" in problems[0]
    problems, _ = check_row_groups(entry, parts, whole_files(paths), 100.0)
    assert len(problems) == 1 and "row group 2" in problems[0]


def test_row_groups_of_other_sizes_or_digests_that_do_not_add_up_are_named(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, parts, paths = backed_up(tmp_path, monkeypatch)
    table = pq.read_table(paths[0])
    pq.write_table(table, paths[0], row_group_size=200)  # the same rows in other groups
    parts[0] = parts[0].model_copy(update={"crc32c": bigquery_io.file_crc32c(paths[0])})
    problems, _ = check_row_groups(entry, parts, whole_files(paths), 100.0)
    assert len(problems) == 1 and "holds 2 row groups of 400 rows" in problems[0]

    (tmp_path / "again").mkdir()
    entry, parts, paths = backed_up(tmp_path / "again", monkeypatch)
    dropped = parts[2].metadata | {"group_digests": []}
    parts[2] = parts[2].model_copy(update={"metadata": dropped})
    problems, _ = check_row_groups(entry, parts, whole_files(paths), 100.0)
    assert problems and "part-00002" in problems[0]


def test_every_file_gets_at_least_one_row_group_decoded() -> None:
    assert sample_groups(0, 5.0) == []
    assert len(sample_groups(3, 5.0)) == 1 and len(sample_groups(40, 5.0)) == 2
    assert sample_groups(7, 100.0) == list(range(7))
    assert not has_group_digests(
        ManifestEntry(
            name="t", stored_key="k", size=1, metadata={"kind": "table", "content_digest": "1:0:0"}
        ),
        [ManifestEntry(name="t", stored_key="k", size=1, metadata={"kind": "table"})],
    )


def test_a_check_that_decoded_no_row_of_a_table_in_parts_fails(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file's bytes and row groups in order, but no row group decoded (a sampler that picks
    none): the check read nothing of the rows and must not pass."""

    class NoPicks(random.Random):
        def sample(self, population: Any, k: int, **_: Any) -> list[int]:  # type: ignore[override]
            return []

    entry, parts, paths = backed_up(tmp_path, monkeypatch)
    assert len(parts) == 3
    problems, decoded = check_row_groups(entry, parts, whole_files(paths), 5.0, NoPicks())
    assert decoded == 0
    assert problems == ["table 'events': no row was decoded to check the backup's content"]
