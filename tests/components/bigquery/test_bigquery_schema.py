"""Pure helpers of the BigQuery component: schema JSON, fingerprints, view order, row hashes, WKB."""

from __future__ import annotations

import struct

import pyarrow as pa
import pytest

from backstop.core.errors import InvalidInput
from tasks.components.bigquery.digest import row_hashes as scheme_2_hashes
from tasks.components.bigquery.schema import (
    TableDigest,
    normalize_batch,
    retarget_sql,
    row_hashes,
    sample_mask,
    schema_fingerprint,
    schema_from_json,
    schema_to_json,
    view_order,
    wkb_to_wkt,
)

pytestmark = pytest.mark.unit

SCHEMA = [
    {"name": "id", "type": "INTEGER", "mode": "REQUIRED", "description": "row id"},
    {
        "name": "st",
        "type": "RECORD",
        "mode": "NULLABLE",
        "fields": [{"name": "x", "type": "FLOAT", "mode": "REPEATED"}],
    },
]


def test_schema_json_round_trips_through_schema_fields() -> None:
    assert schema_to_json(schema_from_json(SCHEMA)) == SCHEMA


def test_fingerprint_ignores_spelling_and_descriptions_but_not_types_or_modes() -> None:
    same = [
        {"name": "ID", "type": "INT64", "mode": "REQUIRED"},
        {"name": "st", "type": "STRUCT", "fields": [{"name": "x", "type": "FLOAT64", "mode": "REPEATED"}]},
    ]
    assert schema_fingerprint(SCHEMA) == schema_fingerprint(same)
    changed = [dict(SCHEMA[0], mode="NULLABLE"), SCHEMA[1]]
    assert schema_fingerprint(SCHEMA) != schema_fingerprint(changed)
    assert schema_fingerprint(SCHEMA) != schema_fingerprint([dict(SCHEMA[0], type="STRING"), SCHEMA[1]])


def test_views_come_after_the_views_they_read() -> None:
    views = {
        "a_top": "SELECT * FROM `p.ds.mid`",
        "mid": "SELECT * FROM ds.base_view JOIN ds.table1 USING (id)",
        "base_view": "SELECT * FROM `p.ds.table1`",
        "other": "SELECT * FROM other_ds.mid",
    }
    order = view_order(views, "ds")
    assert order.index("base_view") < order.index("mid") < order.index("a_top")
    assert sorted(order) == sorted(views)


def test_view_cycle_is_an_error_naming_the_views() -> None:
    with pytest.raises(InvalidInput, match="cycle"):
        view_order({"v1": "SELECT * FROM ds.v2", "v2": "SELECT * FROM ds.v1"}, "ds")


def test_retarget_sql_moves_references_to_the_target_dataset_only() -> None:
    sql = (
        "SELECT * FROM `proj.src.t` JOIN src.u USING (id) JOIN other_src.v USING (id) JOIN srcx.w USING (id)"
    )
    out = retarget_sql(sql, "src", "dst", "proj")
    assert (
        out
        == "SELECT * FROM `proj.dst.t` JOIN dst.u USING (id) JOIN other_src.v USING (id) JOIN srcx.w USING (id)"
    )


def _point(x: float, y: float, order: str = "<") -> bytes:
    return (b"\x01" if order == "<" else b"\x00") + struct.pack(order + "Idd", 1, x, y)


def test_wkb_to_wkt_points_lines_polygons_and_collections() -> None:
    assert wkb_to_wkt(_point(1, 2)) == "POINT(1 2)"
    assert wkb_to_wkt(_point(1.5, -2, ">")) == "POINT(1.5 -2)"
    line = b"\x01" + struct.pack("<II", 2, 2) + struct.pack("<dddd", 0, 0, 1, 1)
    assert wkb_to_wkt(line) == "LINESTRING(0 0, 1 1)"
    ring = struct.pack("<I", 4) + struct.pack("<8d", 0, 0, 1, 0, 1, 1, 0, 0)
    assert wkb_to_wkt(b"\x01" + struct.pack("<II", 3, 1) + ring) == "POLYGON((0 0, 1 0, 1 1, 0 0))"
    multi = b"\x01" + struct.pack("<II", 4, 2) + _point(1, 2) + _point(3, 4)
    assert wkb_to_wkt(multi) == "MULTIPOINT((1 2), (3 4))"
    coll = b"\x01" + struct.pack("<II", 7, 2) + _point(1, 2) + line
    assert wkb_to_wkt(coll) == "GEOMETRYCOLLECTION(POINT(1 2), LINESTRING(0 0, 1 1))"


def test_normalize_batch_turns_wkb_geography_into_wkt() -> None:
    batch = pa.record_batch({"g": pa.array([_point(1, 2), None], pa.binary()), "b": pa.array([b"x", None])})
    out = normalize_batch(batch, ["g"])
    assert out.column(0).to_pylist() == ["POINT(1 2)", None]
    assert out.column(1).type == pa.binary()


def _batch(rows: list[dict[str, object]]) -> pa.RecordBatch:
    schema = pa.schema([("i", pa.int64()), ("f", pa.float64()), ("s", pa.string()), ("d", pa.date32()),
                        ("a", pa.list_(pa.int64())), ("st", pa.struct([("x", pa.string())]))])  # fmt: skip
    return pa.RecordBatch.from_pylist(rows, schema=schema)


ROWS = [
    {"i": 1, "f": float("nan"), "s": "héllo", "d": None, "a": [1, 2], "st": {"x": "q"}},
    {"i": 2, "f": None, "s": None, "d": None, "a": [], "st": None},
    {"i": 3, "f": float("inf"), "s": "", "d": None, "a": None, "st": {"x": None}},
]


def test_row_hashes_are_order_independent_and_see_every_value() -> None:
    forward, backward = TableDigest(), TableDigest()
    forward.add(row_hashes(_batch(ROWS)))
    backward.add(row_hashes(_batch(ROWS[::-1])))
    assert forward.hexdigest == backward.hexdigest and forward.rows == 3
    for change in ({"f": 0.0}, {"s": "hello"}, {"a": [2, 1]}, {"st": {"x": "r"}}, {"s": None}, {"a": None}):
        other = TableDigest()
        other.add(row_hashes(_batch([ROWS[0] | change, *ROWS[1:]])))
        assert other.hexdigest != forward.hexdigest, change


def test_nan_null_empty_string_and_empty_list_hash_apart() -> None:
    hashes = row_hashes(
        _batch([{"i": 1, "f": float("nan"), "s": "", "a": []}, {"i": 1, "f": None, "s": None, "a": None}])
    )
    assert hashes[0] != hashes[1]


def test_text_digests_are_those_earlier_backups_recorded() -> None:
    # Digests recorded before text columns were hashed once per distinct text: old backups must still
    # validate, whether texts repeat or not and however the rows are batched.
    from tasks.components.bigquery.schema import RowHasher

    texts = ["héllo", "", None, "a", "héllo", "ünï 😀", None, "a", "zz" * 40]
    table = pa.table({"s": pa.array(texts, pa.string()), "ls": pa.array(texts[::-1], pa.large_string()),
                      "none": pa.array([None] * 9, pa.string()), "i": pa.array(range(9), pa.int64())})  # fmt: skip
    for repeats in ({}, {"s": False, "ls": False, "none": False}):
        whole, part = TableDigest(), TableDigest()
        whole.add(row_hashes(table, dict(repeats)))
        part.add(row_hashes(table.slice(2, 5), dict(repeats)))
        assert (whole.hexdigest, part.hexdigest) == ("9:a20ca74b39efbcc8:9852167aacfe1e1a",
                                                     "5:599222a2e3d90c91:e1d62111618bec51")  # fmt: skip
    batched, hash_rows = TableDigest(), RowHasher()
    for batch in table.to_batches(max_chunksize=2):
        batched.add(hash_rows(batch))
    assert batched.hexdigest == "9:a20ca74b39efbcc8:9852167aacfe1e1a"


def test_sample_mask_picks_the_same_rows_whatever_the_order() -> None:
    rows = [{"i": n, "s": str(n)} for n in range(2000)]
    schema = pa.schema([("i", pa.int64()), ("s", pa.string())])
    forward = row_hashes(pa.RecordBatch.from_pylist(rows, schema=schema))
    backward = row_hashes(pa.RecordBatch.from_pylist(rows[::-1], schema=schema))
    picked = sorted(forward[sample_mask(forward, 10)])
    assert picked == sorted(backward[sample_mask(backward, 10)])
    assert 100 < len(picked) < 300
    assert sample_mask(forward, 0).sum() == 0 and sample_mask(forward, 100).all()


def test_parquet_parts_split_batches_exactly_and_keep_the_digest(tmp_path: object) -> None:
    import pyarrow.parquet as pq

    from tasks.components.bigquery.data import write_parquet_parts

    schema = pa.schema([("i", pa.int64()), ("s", pa.string())])
    batches = [pa.RecordBatch.from_pylist([{"i": n, "s": f"r{n}"} for n in range(k, k + 300)], schema=schema)
               for k in range(0, 900, 300)]  # fmt: skip
    parts: list[tuple[int, int, list[int]]] = []

    def on_part(index: int, path: str, rows: int) -> None:
        parts.append((index, rows, pq.read_table(path).column("i").to_pylist()))

    digest = write_parquet_parts(iter(batches), str(tmp_path), on_part, part_rows=250)
    assert [(i, rows) for i, rows, _ in parts] == [(0, 250), (1, 250), (2, 250), (3, 150)]
    assert sum((ids for _, _, ids in parts), []) == list(range(900))
    whole = TableDigest()
    whole.add(scheme_2_hashes(pa.Table.from_batches(batches)))  # what backups record now
    assert digest.hexdigest == whole.hexdigest


def test_parquet_row_groups_gather_many_batches(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    from tasks.components.bigquery import data as bigquery_io

    monkeypatch.setattr(bigquery_io, "GROUP_ROWS", 250)
    schema = pa.schema([("i", pa.int64()), ("s", pa.string())])
    batches = [pa.RecordBatch.from_pylist([{"i": n, "s": f"r{n % 7}"} for n in range(k, k + 100)], schema=schema)
               for k in range(0, 900, 100)]  # fmt: skip
    files: list[tuple[int, list[int]]] = []

    def on_part(index: int, path: str, rows: int) -> None:
        meta = pq.read_metadata(path)
        groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        files.append((rows, groups))
        assert pq.read_table(path).column("i").to_pylist() == list(range(900))

    digest = bigquery_io.write_parquet_parts(iter(batches), str(tmp_path), on_part)
    assert files == [(900, [300, 300, 300])]
    whole = TableDigest()
    whole.add(scheme_2_hashes(pa.Table.from_batches(batches)))  # what backups record now
    assert digest.hexdigest == whole.hexdigest


def test_prefetch_hands_reader_errors_to_the_consumer() -> None:
    from tasks.storage.parallel import prefetch

    def broken() -> object:
        yield 1
        raise ConnectionError("stream reset")

    got = []
    with pytest.raises(ConnectionError, match="stream reset"):
        for item in prefetch(broken()):  # type: ignore[arg-type]
            got.append(item)
    assert got == [1]
