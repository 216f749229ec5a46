"""BigQuery data movement: Storage Read API -> Parquet (bounded memory), Parquet / Avro -> load job.

Every Google call has a timeout and a bounded retry and converts its errors (tasks.storage.bucket.converted_errors).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.components.bigquery.digest import DIGEST_SCHEME, GroupDigests, row_hasher
from tasks.components.bigquery.schema import TableDigest, normalize_batch
from tasks.storage import scratch
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors
from tasks.storage.parallel import prefetch_many

READ_TIMEOUT = 600.0
# Rows per Parquet part file: big tables become several files (and several load jobs on restore).
PART_ROWS = 20_000_000
# Rows (or bytes) per Parquet row group: fewer, bigger groups encode faster and compress better.
GROUP_ROWS = 262_144
GROUP_BYTES = 64 << 20
# Storage Read API streams of a table read at once. How many streams a table has is the service's
# choice (max_stream_count 0, as Google's own client asks): it splits big tables, and gives small
# ones (the local emulator: every table) a single stream, which reads fastest there (a 3M-row table:
# 0.71-0.79 s on one stream, 1.12-1.17 s on four asked for). Beyond READ_THREADS streams, each
# thread reads several in turn.
READ_THREADS = 4
T = TypeVar("T")


def table_path(project: str, dataset: str, table: str) -> str:
    return f"projects/{project}/datasets/{dataset}/tables/{table}"


def read_batches(
    read_client: Any,
    project: str,
    dataset: str,
    table: str,
    snapshot_time: datetime | None = None,
    geography: list[str] | None = None,
    streams: int = 0,
) -> Iterator[pa.RecordBatch]:
    """Record batches of `table` from the Storage Read API, as of `snapshot_time` where the service honours it.

    GEOGRAPHY columns are normalised to WKT text (what BigQuery exports and loads). `streams`: at
    most that many read streams (0: as many as the service chooses).
    """
    from google.cloud.bigquery_storage_v1 import types

    modifiers = types.ReadSession.TableModifiers(snapshot_time=snapshot_time) if snapshot_time else None
    request = types.ReadSession(
        table=table_path(project, dataset, table),
        data_format=types.DataFormat.ARROW,
        table_modifiers=modifiers,
    )
    where = f"reading BigQuery table {project}.{dataset}.{table}"
    with converted_errors(where):
        session = read_client.create_read_session(
            parent=f"projects/{project}",
            read_session=request,
            max_stream_count=streams,
            timeout=TIMEOUT,
            retry=RETRY,
        )
    schema = (
        pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema)) if session.streams else None
    )

    def stream_batches(name: str) -> Iterator[pa.RecordBatch]:
        with converted_errors(where):
            for response in read_client.read_rows(name, timeout=READ_TIMEOUT):
                payload = response.arrow_record_batch.serialized_record_batch
                if payload and schema is not None:
                    batch = pa.ipc.read_record_batch(pa.py_buffer(payload), schema)
                    yield normalize_batch(batch, geography or [])

    # Up to READ_THREADS reader threads, each reading its share of the streams one after another,
    # merged (row order does not matter: digests are order-independent).
    names = [stream.name for stream in session.streams]
    shares = [names[i::READ_THREADS] for i in range(min(READ_THREADS, len(names)))]
    yield from prefetch_many([itertools.chain.from_iterable(map(stream_batches, share)) for share in shares])


def read_to_files(
    read_client: Any,
    project: str,
    dataset: str,
    table: str,
    snapshot_time: datetime,
    schema: list[dict[str, Any]],
    data_format: str,
    on_part: Callable[[int, str, int], None],
) -> TableDigest:
    """Stream a table from the Storage Read API into Parquet part files (or one Avro file), each
    handed to `on_part(index, path, rows)` as it is finished; returns the content digest."""
    from tasks.components.bigquery.schema import geography_columns

    with scratch.directory("backstop-bq-") as directory:
        batches = read_batches(read_client, project, dataset, table, snapshot_time, geography_columns(schema))
        if data_format != "avro":
            return write_parquet_parts(batches, directory, on_part)
        from tasks.components.bigquery.avro import write_avro

        path = os.path.join(directory, "part-00000.avro")
        with open(path, "wb") as handle:
            digest = write_avro(batches, handle, schema)
        on_part(0, path, digest.rows)
        return digest


def write_parquet_parts(
    batches: Iterator[pa.RecordBatch],
    directory: str,
    on_part: Callable[[int, str, int], None],
    part_rows: int | None = None,
    compression: str = "zstd",
) -> GroupDigests:
    """Stream `batches` into Parquet files of about `part_rows` rows each; return the content digest
    (with one digest per row group of each part: tasks/components/bigquery/digest.py).

    Bounded memory: one row group being gathered (GROUP_ROWS rows or GROUP_BYTES, whichever comes
    first), one batch being hashed, a few read ahead. Each finished part is handed to
    `on_part(index, path, rows)` (which uploads and may delete it) before the next starts, so local
    disk holds one part at a time. No file is written when no batch comes.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    digest, hash_rows = GroupDigests(), row_hasher(DIGEST_SCHEME)
    parts = _PartWriter(directory, on_part, part_rows or PART_ROWS, compression, digest)
    pending: Future[Any] | None = None
    # Hashing runs beside the Parquet encoder (which releases the GIL), so the two overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigquery-hash") as hasher:
        try:
            for batch in batches:
                batch = parts.add(batch)
                if pending is not None:
                    digest.add(pending.result())
                pending = hasher.submit(hash_rows, batch)
            if pending is not None:
                digest.add(pending.result())
            parts.finish_part()
        finally:
            parts.close()
    digest.finish()
    return digest


class _PartWriter:
    """Parquet part files of up to `part_rows` rows, written a row group at a time.

    Batches are gathered into row groups of up to GROUP_ROWS rows (GROUP_BYTES): the Storage Read
    API's batches (tens of thousands of rows) as row groups cost more to encode and compress worse.
    Each row group written is told to `digests` (whose row-group digests follow the file's groups).
    """

    def __init__(
        self,
        directory: str,
        on_part: Callable[[int, str, int], None],
        part_rows: int,
        compression: str,
        digests: GroupDigests,
    ) -> None:
        self.directory, self.on_part, self.part_rows = directory, on_part, part_rows
        self.compression, self.digests = compression, digests
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | None = None
        self.index, self.rows, self.path = 0, 0, ""
        self.group: list[pa.RecordBatch] = []
        self.group_rows, self.group_bytes = 0, 0

    def add(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Take `batch` (split where it straddles two parts); returns it without schema metadata."""
        if self.schema is None:
            self.schema = batch.schema.remove_metadata()
        batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        offset = 0
        while offset < batch.num_rows:
            take = min(batch.num_rows - offset, self.part_rows - self.rows)
            piece = batch.slice(offset, take) if take < batch.num_rows else batch
            self.group.append(piece)
            self.rows, self.group_rows, offset = self.rows + take, self.group_rows + take, offset + take
            self.group_bytes += piece.nbytes
            if self.rows >= self.part_rows:
                self.finish_part()
            elif self.group_rows >= GROUP_ROWS or self.group_bytes >= GROUP_BYTES:
                self.flush()
        return batch

    def flush(self) -> None:
        """Write the gathered batches as one row group."""
        if not self.group or self.schema is None:
            return
        if self.writer is None:
            self.path = os.path.join(self.directory, f"part-{self.index:05d}.parquet")
            self.writer = pq.ParquetWriter(
                self.path,
                self.schema,
                compression=self.compression,
                use_dictionary=dictionary_columns(self.schema),
            )
        table = pa.Table.from_batches(self.group, schema=self.schema)
        self.writer.write_table(table, row_group_size=self.group_rows)
        self.digests.end_group(self.index, self.group_rows)
        self.group, self.group_rows, self.group_bytes = [], 0, 0

    def finish_part(self) -> None:
        """Close the current part file and hand it to `on_part`."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.on_part(self.index, self.path, self.rows)
            self.index, self.rows = self.index + 1, 0

    def close(self) -> None:
        """Close an unfinished part file (after an error)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Top-level text and binary columns: dictionary encoding pays off there and costs time elsewhere
    (measured on 500k rows: half the write time and under half the size of dictionary-everything)."""
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def file_crc32c(path: str, chunk: int = 8 << 20) -> str:
    """CRC32C of a file (base64, as Cloud Storage reports it), read in chunks."""
    import base64

    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


def parquet_batches(path: str, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Record batches of a Parquet file, one at a time."""
    yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)


def parquet_rows(path: str) -> int:
    """Row count from the Parquet footer (no data pages read)."""
    return int(pq.read_metadata(path).num_rows)


def _holds_lists(kind: pa.DataType) -> bool:
    """Whether a Parquet column (or a field inside it) is a list: only then does a load need list
    inference, which costs the load job time."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return True
    return pa.types.is_struct(kind) and any(_holds_lists(kind.field(i).type) for i in range(kind.num_fields))


def load_parquet(
    client: Any, path: str, table_ref: str, truncate: bool = False, data_format: str = "parquet"
) -> int:
    """Load a Parquet (or, with data_format="avro", Avro) file into an existing table; returns the rows
    the job reports."""
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.AVRO if data_format == "avro" else bigquery.SourceFormat.PARQUET,
        write_disposition="WRITE_TRUNCATE" if truncate else "WRITE_APPEND",
    )
    if data_format == "avro":
        config.use_avro_logical_types = True  # date, time-micros, timestamp-micros, decimal as typed values
    elif any(_holds_lists(field.type) for field in pq.read_schema(path)):  # REPEATED columns
        options = bigquery.ParquetOptions()
        options.enable_list_inference = True  # read as arrays, not as records of a "list" field
        config.parquet_options = options
    with converted_errors(f"loading {path} into BigQuery table {table_ref}"), open(path, "rb") as handle:
        # size=None: a resumable upload (the emulator refuses the multipart form's '*/*' media part).
        job = client.load_table_from_file(handle, table_ref, size=None, job_config=config, timeout=TIMEOUT)
        job.result(timeout=READ_TIMEOUT, retry=RETRY)
    return int(job.output_rows or 0)


def table_digest(
    read_client: Any,
    project: str,
    dataset: str,
    table: str,
    geography: list[str],
    scheme: int = DIGEST_SCHEME,
) -> TableDigest:
    """Content digest of a table as it is now (all rows, streamed), in digest scheme `scheme`."""
    digest, hash_rows = TableDigest(), row_hasher(scheme)
    for batch in read_batches(read_client, project, dataset, table, geography=geography):
        digest.add(hash_rows(batch))
    return digest


def temp_path(suffix: str = ".parquet") -> str:
    handle, path = tempfile.mkstemp(prefix="backstop-bq-", suffix=suffix, dir=scratch.folder())
    os.close(handle)
    return path
