"""BigQuery table data as Avro (the `format="avro"` option): schema mapping, streaming writer, reader.

The Avro schema is derived from the BigQuery schema with logical types, as BigQuery's own Avro export
does: NUMERIC -> bytes/decimal(38, 9), DATE -> int/date, TIME -> long/time-micros, TIMESTAMP ->
long/timestamp-micros, DATETIME -> string/datetime (ISO text, as BigQuery exports it), JSON and GEOGRAPHY (WKT) -> string,
REPEATED -> array, RECORD -> record. Every NULLABLE and REPEATED field is a ["null", T] union.

Rows are written block by block from the Storage Read API's Arrow batches (bounded memory: one
batch decoded at a time). The Arrow schema of those batches is kept in the file's metadata so a
re-read gives the same Arrow types, hence the same row hashes, as the source read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO, cast

import pyarrow as pa

from tasks.components.bigquery.digest import DIGEST_SCHEME, row_hasher
from tasks.components.bigquery.schema import TableDigest

ARROW_SCHEMA_KEY = "backstop.arrow_schema"
SYNC_INTERVAL = 1 << 20  # bytes per Avro block (fastavro's default is 16 KB: too many tiny blocks)

_SCALARS: dict[str, Any] = {
    "INT64": "long",
    "INTEGER": "long",
    "FLOAT64": "double",
    "FLOAT": "double",
    "BOOL": "boolean",
    "BOOLEAN": "boolean",
    "STRING": "string",
    "BYTES": "bytes",
    "JSON": "string",
    "GEOGRAPHY": "string",
    "NUMERIC": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 9},
    "DATE": {"type": "int", "logicalType": "date"},
    "TIME": {"type": "long", "logicalType": "time-micros"},
    "TIMESTAMP": {"type": "long", "logicalType": "timestamp-micros"},
    # BigQuery's own Avro export and load: DATETIME is a string with logical type "datetime".
    "DATETIME": {"type": "string", "logicalType": "datetime"},
}


def avro_type(field: dict[str, Any], path: str) -> Any:
    """The Avro type of one BigQuery field (API JSON), mode included."""
    kind = str(field.get("type", "")).upper()
    if kind in ("RECORD", "STRUCT"):
        base: Any = {
            "type": "record",
            "name": path.replace(".", "_"),
            "fields": [
                {"name": f["name"], "type": avro_type(f, f"{path}.{f['name']}")}
                for f in field.get("fields") or []
            ],
        }
    elif kind in _SCALARS:
        base = _SCALARS[kind]
    else:
        from backstop.core.errors import InvalidInput

        raise InvalidInput(f"BigQuery type {kind} of column {path} has no Avro mapping in Backstop")
    mode = str(field.get("mode") or "NULLABLE").upper()
    if mode == "REPEATED":
        # nullable: a source read gives NULL for an unset REPEATED field, and BigQuery loads it as []
        return ["null", {"type": "array", "items": base}]
    return base if mode == "REQUIRED" else ["null", base]


def avro_schema(schema: list[dict[str, Any]], name: str = "row") -> dict[str, Any]:
    """The Avro record schema of a BigQuery table schema (API JSON)."""
    return {
        "type": "record",
        "name": name,
        "fields": [{"name": f["name"], "type": avro_type(f, f"{name}.{f['name']}")} for f in schema],
    }


def _fix_row(row: dict[str, Any], schema: list[dict[str, Any]], to_avro: bool) -> dict[str, Any]:
    """Convert a row between Arrow's Python values and Avro's, in place (DATETIME is ISO text in Avro)."""
    for field in schema:
        name, value = field["name"], row.get(field["name"])
        repeated = str(field.get("mode") or "").upper() == "REPEATED"
        if value is None:
            continue
        kind = str(field.get("type", "")).upper()
        items = value if repeated else [value]
        if kind == "DATETIME":
            done = [v.isoformat() if to_avro else datetime.fromisoformat(v) for v in items]
            row[name] = done if repeated else done[0]
        elif field.get("fields"):
            for item in items:
                if isinstance(item, dict):
                    _fix_row(item, field["fields"], to_avro)
    return row


def _plain_temporals(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Top-level DATE / TIME / TIMESTAMP columns as their integer values (days, micros), which the
    Avro logical types store as they are: far cheaper than Python date and datetime objects."""
    columns = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_date32(kind):
            column = column.view(pa.int32())
        elif pa.types.is_time64(kind) and kind.unit == "us":
            column = column.view(pa.int64())
        elif pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz is not None:
            column = column.view(pa.int64())  # TIMESTAMP; DATETIME (no zone) stays: ISO text in Avro
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def write_avro(
    batches: Iterator[pa.RecordBatch], handle: BinaryIO, schema: list[dict[str, Any]], codec: str = "deflate"
) -> TableDigest:
    """Stream `batches` into one Avro file on `handle`; return the content digest of the rows."""
    import fastavro

    parsed = fastavro.parse_schema(avro_schema(schema))
    digest, hash_rows = TableDigest(), row_hasher(DIGEST_SCHEME)
    writer: Any = None
    for batch in batches:
        if writer is None:
            arrow = base64.b64encode(batch.schema.remove_metadata().serialize().to_pybytes()).decode()
            writer = fastavro.write.Writer(
                handle, parsed, codec=codec, sync_interval=SYNC_INTERVAL, metadata={ARROW_SCHEMA_KEY: arrow}
            )
        digest.add(hash_rows(batch))
        for row in _plain_temporals(batch).to_pylist():
            writer.write(_fix_row(row, schema, to_avro=True))
        writer.flush()  # one batch at most in memory
    if writer is None:
        fastavro.writer(handle, parsed, [], codec=codec)
    else:
        writer.flush()
    return digest


def avro_rows(handle: BinaryIO) -> int:
    """Rows of an Avro file from its block headers (blocks are decompressed and their sync markers
    checked, but not decoded record by record); ValueError names what is damaged."""
    import fastavro

    try:
        return sum(int(block.num_records) for block in fastavro.block_reader(handle))
    except Exception as exc:  # fastavro raises many kinds (zlib.error, EOFError, ValueError, ...)
        raise ValueError(f"damaged Avro data: {type(exc).__name__}: {exc}") from exc


def avro_batches(
    handle: BinaryIO, schema: list[dict[str, Any]], batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Record batches of an Avro file written by `write_avro`, in the Arrow types of the source read."""
    import fastavro

    reader = fastavro.reader(handle)
    encoded = reader.metadata.get(ARROW_SCHEMA_KEY)
    if not encoded:  # written with no batch: an empty table
        if any(True for _ in reader):
            raise ValueError("Avro file has rows but no Backstop Arrow schema in its metadata")
        return
    arrow = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded)))
    rows: list[Any] = []
    for record in reader:
        rows.append(_fix_row(cast(dict[str, Any], record), schema, to_avro=False))
        if len(rows) >= batch_rows:
            yield pa.RecordBatch.from_pylist(rows, schema=arrow)
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=arrow)
