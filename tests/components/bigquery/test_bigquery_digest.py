"""Content digests of BigQuery tables (tasks/components/bigquery/digest.py): what they see and what they ignore."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.components.bigquery.digest import DIGEST_SCHEME, digest_scheme, row_hasher, row_hashes
from tasks.components.bigquery.schema import TableDigest

pytestmark = pytest.mark.unit

# The Arrow types the Storage Read API gives for each BigQuery type.
SCHEMA = pa.schema(
    [
        ("i", pa.int64()),
        ("n", pa.decimal128(38, 9)),
        ("bn", pa.decimal256(76, 38)),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("s", pa.string()),
        ("by", pa.binary()),
        ("d", pa.date32()),
        ("dt", pa.timestamp("us")),
        ("t", pa.time64("us")),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("a", pa.list_(pa.int64())),
        ("st", pa.struct([("x", pa.string()), ("y", pa.list_(pa.float64())),
                          ("in", pa.struct([("z", pa.decimal128(38, 9))]))])),
        ("rs", pa.list_(pa.struct([("k", pa.string()), ("v", pa.int64())]))),
    ]
)  # fmt: skip

ROW: dict[str, Any] = {
    "i": 7, "n": Decimal("123.456000001"), "bn": Decimal("-1.5"), "f": 2.5, "b": True, "s": "héllo ✓ 日本",
    "by": b"\x00\xff\x10", "d": date(2024, 1, 2), "dt": datetime(2024, 1, 2, 3, 4, 5, 123456),
    "t": time(12, 34, 56, 789000), "ts": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "a": [1, 2, 3],
    "st": {"x": "q", "y": [1.5, -2.0], "in": {"z": Decimal("0.000000001")}}, "rs": [{"k": "a", "v": 1}, {"k": None, "v": None}],
}  # fmt: skip
OTHER: dict[str, Any] = {
    "i": 8,
    "s": "a longer text, past one 8-byte word " * 3,
    "a": [],
    "st": None,
    "rs": [],
}
NULLS: dict[str, Any] = {}


def rows(extra: int = 300) -> list[dict[str, Any]]:
    """ROW, OTHER, an all-NULL row, and `extra` varied rows."""
    more = [{"i": k, "n": Decimal(k) / 1000, "s": "x" * (k % 23), "a": list(range(k % 5)),
             "st": {"x": str(k), "y": [float(k)] * (k % 3), "in": None}} for k in range(extra)]  # fmt: skip
    return [ROW, OTHER, NULLS, *more]


def digest(batches: list[pa.RecordBatch] | pa.Table, scheme: int = DIGEST_SCHEME) -> str:
    result, hasher = TableDigest(), row_hasher(scheme)
    for batch in batches.to_batches() if isinstance(batches, pa.Table) else batches:
        result.add(hasher(batch))
    return result.hexdigest


def test_digest_does_not_depend_on_batches_row_groups_or_order(tmp_path: Any) -> None:
    table = pa.Table.from_pylist(rows(), schema=SCHEMA)
    whole = digest([table.combine_chunks().to_batches()[0]])
    for size in (1, 2, 7, 64, 1000):
        assert digest(table.to_batches(max_chunksize=size)) == whole, size
    assert digest([pa.Table.from_pylist(rows()[::-1], schema=SCHEMA).to_batches()[0]]) == whole
    # sliced batches (offsets into shared buffers), as a reader hands them out
    assert (
        digest(
            [
                table.slice(0, 5).combine_chunks().to_batches()[0],
                table.slice(5).combine_chunks().to_batches()[0],
            ]
        )
        == whole
    )
    for group in (3, 100):
        path = str(tmp_path / f"g{group}.parquet")
        pq.write_table(table, path, row_group_size=group, compression="zstd")
        assert digest(list(pq.ParquetFile(path).iter_batches(batch_size=50))) == whole, group


CHANGES = [
    ("i", 8), ("n", Decimal("123.456000002")), ("n", Decimal("-123.456000001")), ("bn", Decimal("-1.6")),
    ("f", 2.5000000001), ("f", float("nan")), ("b", False), ("s", "héllo ✓ 日本!"), ("s", "hello ✓ 日本"),
    ("by", b"\x00\xff\x11"), ("by", b"\x00\xff\x10\x00"), ("d", date(2024, 1, 3)),
    ("dt", datetime(2024, 1, 2, 3, 4, 5, 123457)), ("t", time(12, 34, 56, 789001)),
    ("ts", datetime(2024, 1, 2, 3, 4, 5, 123457, tzinfo=UTC)), ("a", [1, 2]), ("a", [2, 1, 3]), ("a", [1, 2, 3, 0]),
    ("st", {"x": "r", "y": [1.5, -2.0], "in": {"z": Decimal("0.000000001")}}),
    ("st", {"x": "q", "y": [-2.0, 1.5], "in": {"z": Decimal("0.000000001")}}),
    ("st", {"x": "q", "y": [1.5, -2.0], "in": {"z": Decimal("0.000000002")}}),
    ("st", {"x": "q", "y": [1.5, -2.0], "in": None}), ("rs", [{"k": "a", "v": 2}, {"k": None, "v": None}]),
    ("rs", [{"k": "a", "v": 1}, {"k": "", "v": None}]), ("rs", [{"k": None, "v": None}, {"k": "a", "v": 1}]),
]  # fmt: skip


@pytest.mark.parametrize(("column", "value"), CHANGES + [(c, None) for c in SCHEMA.names])
def test_one_changed_value_in_any_column_changes_the_digest(column: str, value: Any) -> None:
    before = rows()
    after = [dict(ROW, **{column: value}), *before[1:]]
    assert digest([pa.RecordBatch.from_pylist(after, schema=SCHEMA)]) != digest(
        [pa.RecordBatch.from_pylist(before, schema=SCHEMA)]
    )


@pytest.mark.parametrize("column", SCHEMA.names)
def test_a_null_becoming_a_value_changes_the_digest(column: str) -> None:
    before = rows()
    after = [*before[:2], {column: ROW[column]}, *before[3:]]
    assert digest([pa.RecordBatch.from_pylist(after, schema=SCHEMA)]) != digest(
        [pa.RecordBatch.from_pylist(before, schema=SCHEMA)]
    )


def test_null_empty_nan_and_zero_hash_apart_and_equal_values_alike() -> None:
    schema = pa.schema([("s", pa.string()), ("a", pa.list_(pa.int64())), ("f", pa.float64())])
    hashes = row_hashes(pa.RecordBatch.from_pylist(
        [{"s": "", "a": [], "f": float("nan")}, {"s": None, "a": None, "f": None}, {"s": "", "a": [], "f": 0.0}],
        schema=schema,
    ))  # fmt: skip
    assert len(set(hashes.tolist())) == 3
    # -0.0 is 0.0, every NaN one NaN; widths of one family hash alike, families apart
    assert (
        row_hashes(pa.table({"f": [-0.0, float("nan")]})).tolist()
        == row_hashes(pa.table({"f": [0.0, -float("nan")]})).tolist()
    )
    assert row_hashes(pa.table({"x": pa.array([5], pa.int32())})) == row_hashes(
        pa.table({"x": pa.array([5], pa.int64())})
    )
    assert row_hashes(pa.table({"x": pa.array(["ab"], pa.large_string())})) == row_hashes(
        pa.table({"x": ["ab"]})
    )
    assert row_hashes(pa.table({"x": pa.array([19_000], pa.int32())})) != row_hashes(
        pa.table({"x": pa.array([19_000], pa.date32())})
    )
    assert row_hashes(pa.table({"x": [1]})) != row_hashes(pa.table({"y": [1]}))  # the column name counts


def test_scheme_2_digests_are_those_recorded_when_it_was_introduced() -> None:
    # Backups record these digests: a change to the hashing must come as a new scheme.
    table = pa.Table.from_pylist(rows(40), schema=SCHEMA)
    assert digest(table) == "43:0a7b850727f39075:7e32b49983700819"
    assert digest(table, scheme=1) == "43:6d54540990443c6f:781c7388e1478973"


def test_entries_without_a_scheme_are_scheme_1() -> None:
    assert digest_scheme({}) == 1 and digest_scheme({"digest_scheme": 2}) == 2
    with pytest.raises(ValueError, match="digest scheme 9"):
        row_hasher(9)


def test_validation_without_row_group_digests_checks_every_row_of_its_files_against_the_digest(
    tmp_path: Any,
) -> None:
    """A backup without row-group digests (made before them, or validated later with the source)
    has its files compared row by row with the digest taken while reading the source
    (restore._check_content): one value changed anywhere in a file whose rows, size and checksum a
    forger made consistent is named; the sample for the source is kept only when asked. (With
    row-group digests, right after the backup: tests/components/bigquery/test_bigquery_rowgroups.py.)"""
    from backstop.core.manifest import ManifestEntry
    from tasks.components.bigquery.restore import _check_content

    table = pa.table({"id": pa.array(range(5000), pa.int64()), "name": [f"user-{i}" for i in range(5000)]})
    digest = TableDigest()
    digest.add(row_hashes(table))
    meta = {"kind": "table", "schema": [], "content_digest": digest.hexdigest, "digest_scheme": DIGEST_SCHEME}
    entry = ManifestEntry(name="events", stored_key="tables/events/part-00000.parquet", size=1, metadata=meta)
    good, bad = str(tmp_path / "good.parquet"), str(tmp_path / "bad.parquet")
    pq.write_table(table, good, row_group_size=1000)
    assert _check_content(entry, [good], None) == ([], [])

    names = table.column("name").to_pylist()
    names[4321] = "user-4321x"
    pq.write_table(table.set_column(1, "name", pa.array(names)), bad, row_group_size=1000)
    problems, _ = _check_content(entry, [bad], None)
    assert (
        len(problems) == 1 and "'events'" in problems[0] and "other rows than the backup read" in problems[0]
    )

    _, sampled = _check_content(entry, [good], 100.0)
    assert sum(len(h) for h in sampled) == 5000


@pytest.mark.parametrize("longest", [0, 1, 8, 9, 17, 64, 65, 300])
def test_short_text_hashes_word_by_word_as_long_text_does(
    longest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values of a few words take the word-position path (digest._short_bytes_hash): the same hash
    as the general path, for text, bytes, large text and sliced arrays, NULLs and empty values."""
    import random

    import numpy as np

    from tasks.components.bigquery import digest

    pick = random.Random(longest)
    values = [None if pick.random() < 0.1 else "".join(chr(pick.randint(32, 0x3000)) for _ in range(pick.randint(0, longest)))
              for _ in range(400)]  # fmt: skip
    arrays = [pa.array(values, pa.string()), pa.array(values, pa.large_string()), pa.array(values).slice(13, 300),
              pa.array([v.encode() if v is not None else None for v in values], pa.binary())]  # fmt: skip
    for array in arrays:
        fast = digest.column_hash(array)
        monkeypatch.setattr(digest, "_DENSE_WORDS", -1)  # every value through the general path
        assert np.array_equal(fast, digest.column_hash(array)), array.type
        monkeypatch.undo()
