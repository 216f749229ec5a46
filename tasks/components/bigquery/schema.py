"""Pure helpers of the BigQuery component: schema JSON, fingerprints, view order, row hashes, WKB.

No I/O here, so all of it is unit-tested without an emulator.

Row hashes are order-independent content checks: every row gets a 64-bit hash of its values
(vectorised with pandas where the column is a plain scalar, canonical JSON text otherwise); a
table's digest is the row count plus the sum and the xor of its row hashes, so two tables with the
same multiset of rows have the same digest whatever order a reader returns them in.
`row_hashes` / `RowHasher` here are digest scheme 1, kept to verify the backups that recorded it;
new backups use scheme 2 (tasks/components/bigquery/digest.py, which says what a digest means).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from backstop.core.errors import InvalidInput

# Legacy and standard SQL names of the same type, so fingerprints do not change with the spelling.
_TYPE_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}
_MASK64 = (1 << 64) - 1


def schema_to_json(fields: Iterable[Any]) -> list[dict[str, Any]]:
    """SchemaFields as their API JSON (modes, nested fields, descriptions, policy tags, defaults)."""
    return [field.to_api_repr() for field in fields]


def schema_from_json(data: list[dict[str, Any]]) -> list[Any]:
    """The SchemaFields described by `schema_to_json` output."""
    from google.cloud.bigquery import SchemaField

    return [SchemaField.from_api_repr(item) for item in data]


def _canonical_field(field: dict[str, Any]) -> dict[str, Any]:
    kind = str(field.get("type", "")).upper()
    return {
        "name": str(field["name"]).lower(),
        "type": _TYPE_ALIASES.get(kind, kind),
        "mode": str(field.get("mode") or "NULLABLE").upper(),
        "fields": [_canonical_field(f) for f in field.get("fields") or []],
    }


def schema_fingerprint(schema: list[dict[str, Any]]) -> str:
    """SHA-256 of the schema's names, types, modes and nesting (descriptions do not count)."""
    body = json.dumps([_canonical_field(f) for f in schema], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def geography_columns(schema: list[dict[str, Any]]) -> list[str]:
    """Top-level GEOGRAPHY columns (written to Parquet as WKT text, as BigQuery exports them)."""
    return [f["name"] for f in schema if str(f.get("type", "")).upper() == "GEOGRAPHY"]


def view_order(views: dict[str, str], dataset: str) -> list[str]:
    """Views ordered so that each comes after the views of `dataset` it reads.

    Args:
        views: view name -> SQL text.
        dataset: the dataset the views live in (references may be `ds.v` or `project.ds.v`).

    Raises:
        InvalidInput: the views reference each other in a cycle.
    """
    deps: dict[str, set[str]] = {}
    for name, sql in views.items():
        found = set()
        for other in views:
            if other == name:
                continue
            pattern = rf"(?<![\w$-]){re.escape(dataset)}`?\.`?{re.escape(other)}(?![\w$-])"
            if re.search(pattern, sql) or re.search(
                rf"`[^`]*\.{re.escape(dataset)}\.{re.escape(other)}`", sql
            ):
                found.add(other)
        deps[name] = found
    ordered: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in done:
            return
        if name in visiting:
            raise InvalidInput(
                f"views of dataset {dataset!r} reference each other in a cycle: {' -> '.join(path)}"
            )
        visiting.add(name)
        for dep in sorted(deps[name]):
            visit(dep, [*path, dep])
        visiting.discard(name)
        done.add(name)
        ordered.append(name)

    for name in sorted(views):
        visit(name, [name])
    return ordered


def retarget_sql(sql: str, source: str, target: str, project: str) -> str:
    """Point references to dataset `source` in a view's SQL at dataset `target`."""
    if source == target:
        return sql
    sql = re.sub(rf"(?<![\w-]){re.escape(project)}\.{re.escape(source)}\.", f"{project}.{target}.", sql)
    sql = re.sub(rf"`{re.escape(project)}`\.`{re.escape(source)}`\.", f"`{project}`.`{target}`.", sql)
    return re.sub(rf"(?<![\w.`-])(`?){re.escape(source)}(`?)\.", rf"\g<1>{target}\g<2>.", sql)


# -- GEOGRAPHY: the emulator's Storage Read API returns WKB; BigQuery loads and exports WKT ----
_WKB_NAMES = {1: "POINT", 2: "LINESTRING", 3: "POLYGON", 4: "MULTIPOINT", 5: "MULTILINESTRING", 6: "MULTIPOLYGON",
              7: "GEOMETRYCOLLECTION"}  # fmt: skip


def _num(value: float) -> str:
    return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(float(value))


def wkb_to_wkt(data: bytes) -> str:
    """Well-known binary (2D, either byte order) to well-known text."""
    text, _ = _read_geometry(memoryview(data), 0)
    return text


def _read_geometry(buf: memoryview, pos: int) -> tuple[str, int]:
    order = "<" if buf[pos] == 1 else ">"
    (kind,) = struct.unpack_from(order + "I", buf, pos + 1)
    pos += 5
    kind %= 1000
    name = _WKB_NAMES.get(kind)
    if name is None:
        raise InvalidInput(f"unsupported WKB geometry type {kind}")

    def point(p: int) -> tuple[str, int]:
        x, y = struct.unpack_from(order + "dd", buf, p)
        return f"{_num(x)} {_num(y)}", p + 16

    def ring(p: int) -> tuple[str, int]:
        (count,) = struct.unpack_from(order + "I", buf, p)
        p += 4
        coords = []
        for _ in range(count):
            c, p = point(p)
            coords.append(c)
        return "(" + ", ".join(coords) + ")", p

    if kind == 1:
        x, y = struct.unpack_from(order + "dd", buf, pos)
        if x != x and y != y:
            return "POINT EMPTY", pos + 16
        body, pos = point(pos)
        return f"POINT({body})", pos
    if kind == 2:
        body, pos = ring(pos)
        return f"LINESTRING{body}", pos
    (count,) = struct.unpack_from(order + "I", buf, pos)
    pos += 4
    parts = []
    for _ in range(count):
        if kind == 3:
            part, pos = ring(pos)
        else:
            part, pos = _read_geometry(buf, pos)
            if kind in (4, 5, 6):
                part = part[part.index("(") :]
        parts.append(part)
    if not parts:
        return f"{name} EMPTY", pos
    return f"{name}(" + ", ".join(parts) + ")", pos


def normalize_batch(batch: pa.RecordBatch, geography: list[str]) -> pa.RecordBatch:
    """GEOGRAPHY columns given as WKB binary become WKT strings; everything else is kept."""
    names = batch.schema.names
    if not any(name in names and pa.types.is_binary(batch.schema.field(name).type) for name in geography):
        return batch
    columns, fields = [], []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if field.name in geography and pa.types.is_binary(field.type):
            column = pa.array([None if v is None else wkb_to_wkt(v) for v in column.to_pylist()], pa.string())
            field = pa.field(field.name, pa.string(), field.nullable)
        columns.append(column)
        fields.append(field.remove_metadata())
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


# -- row hashes ----------------------------------------------------------------------------
def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, bytes):
        return "b64:" + value.hex()
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)


def hash_array(values: np.ndarray, categorize: bool = True) -> np.ndarray:
    """pandas' `hash_array`, the row digests' hash of a column's values. pandas (~0.2 s to import) is
    imported on the first hash, not with this module: the BigQuery component's modules load without
    it (a command that reads only the catalog); a run that reads BigQuery imports it anyway, with
    google-cloud-bigquery-storage's reader."""
    from pandas.util import hash_array as pandas_hash

    return pandas_hash(values, categorize=categorize)


def _column_hash(column: pa.Array, name: str, repeats: dict[str, bool]) -> np.ndarray:
    import pyarrow.compute as pc

    kind = column.type
    nulls = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_temporal(kind):
        if pa.types.is_date32(kind):
            column = column.cast(pa.int32())
        elif pa.types.is_temporal(kind):
            column = column.view(pa.int64()) if kind.bit_width == 64 else column.view(pa.int32())
        ints = (
            pc.fill_null(column.cast(pa.int64()), 0)
            .to_numpy(zero_copy_only=False)
            .astype(np.int64, copy=False)
        )
        # the type family salts the hash: DATE 1 and INT64 1 in the same column position must differ
        values = hash_array(ints) + np.uint64(hash_kind(kind))
    elif pa.types.is_floating(kind):
        floats = (
            pc.fill_null(column.cast(pa.float64()), 0.0)
            .to_numpy(zero_copy_only=False)
            .astype(np.float64, copy=False)
        )
        floats = np.where(np.isnan(floats), np.float64("nan"), floats) + 0.0  # one NaN, and -0.0 == 0.0
        values = hash_array(floats.view(np.uint64))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values, repeats[name] = _text_hashes(column, repeats.get(name, True))
    else:
        texts = np.array(
            [json.dumps(_canonical(v), sort_keys=True, default=str) for v in column.to_pylist()], dtype=object
        )
        values = hash_array(texts, categorize=False)
    values = np.asarray(values, dtype=np.uint64)
    return values if nulls is None else np.where(nulls, _NULL_HASH, values)


def _text_hashes(column: pa.Array, by_distinct: bool) -> tuple[np.ndarray, bool]:
    """pandas' hash of each text (null rows: any value, the caller replaces them), and whether the
    texts repeat enough for `by_distinct` to pay off on the next batch.

    `by_distinct`: each distinct text is hashed once (Arrow finds them in C++) and spread back to its
    rows, the same values at a fraction of the cost where texts repeat; mostly distinct texts are
    cheaper hashed row by row.
    """
    import pyarrow.compute as pc

    if not by_distinct:
        texts = pc.fill_null(column, "").to_numpy(zero_copy_only=False)
        return np.asarray(hash_array(texts, categorize=False)), False
    encoded = column.dictionary_encode()
    repeats = 2 * len(encoded.dictionary) <= len(column)
    if len(encoded.dictionary) == 0:  # every row null
        return np.zeros(len(column), dtype=np.uint64), repeats
    distinct = hash_array(encoded.dictionary.to_numpy(zero_copy_only=False), categorize=False)
    return np.asarray(distinct[pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)]), repeats


def hash_kind(kind: pa.DataType) -> int:
    """A small stable number per Arrow type family (so equal integers of different types differ)."""
    return int(hashlib.sha256(str(kind).split("[")[0].encode()).hexdigest()[:8], 16)


def row_hashes(batch: pa.RecordBatch | pa.Table, repeats: dict[str, bool] | None = None) -> np.ndarray:
    """One 64-bit hash per row over all columns (column order and names count).

    `repeats` (see RowHasher) only changes how text columns are hashed, never the hashes.
    """
    repeats = {} if repeats is None else repeats
    rows = batch.num_rows
    result = np.full(rows, np.uint64(len(batch.schema)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            salt = np.uint64(int(hashlib.sha256(name.encode()).hexdigest()[:16], 16))
            result = result * np.uint64(1_000_003) ^ (_column_hash(column, name, repeats) + salt)
    return result


class RowHasher:
    """`row_hashes` over the batches of one table: it remembers which text columns repeat (from the
    first batch), so later batches take the cheaper way for each. Not shared between threads."""

    def __init__(self) -> None:
        self.repeats: dict[str, bool] = {}

    def __call__(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        return row_hashes(batch, self.repeats)


@dataclass
class TableDigest:
    """Order-independent content digest of a table: count, sum and xor of its row hashes."""

    rows: int = 0
    total: int = 0
    xor: int = 0

    def add(self, hashes: np.ndarray) -> None:
        self.rows += int(hashes.size)
        with np.errstate(over="ignore"):
            self.total = (self.total + int(hashes.sum(dtype=np.uint64))) & _MASK64
        if hashes.size:
            self.xor ^= int(np.bitwise_xor.reduce(hashes))

    @property
    def hexdigest(self) -> str:
        return f"{self.rows}:{self.total:016x}:{self.xor:016x}"


def sample_mask(hashes: np.ndarray, percent: float) -> np.ndarray:
    """Rows chosen for a content sample: the same rows whatever order they are read in."""
    return np.asarray(hashes % np.uint64(10_000) < np.uint64(round(percent * 100)), dtype=bool)


# Column types some BigQuery services cannot create (the local emulator answers HTTP 500 to BIGNUMERIC).
RISKY_TYPES = ("BIGNUMERIC", "BIGDECIMAL")


def risky_columns(schema: list[dict[str, Any]], prefix: str = "") -> list[str]:
    """`<column> <TYPE>` for every column (nested ones as `a.b`) whose type is in RISKY_TYPES."""
    found = []
    for field in schema:
        name = prefix + str(field.get("name"))
        kind = str(field.get("type", "")).upper()
        if kind in RISKY_TYPES:
            found.append(f"{name} {kind}")
        found += risky_columns(field.get("fields") or [], name + ".")
    return found
