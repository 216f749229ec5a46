"""The backup half of the BigQuery component: list a dataset, write its metadata, read each table
(Storage Read API, extract job or native snapshot) into the backup bucket with its digest, and the
source state. The restore half (restore.py) and the component (component.py) sit on top of it."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from backstop.core.errors import Conflict, InvalidInput, NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.names import check_dataset, check_table
from blocks.clients import bigquery_client, bigquery_read_client
from blocks.settings import BackstopSettings
from tasks.components.bigquery import data as bqio
from tasks.components.bigquery import history
from tasks.components.bigquery.digest import DIGEST_SCHEME, GroupDigests
from tasks.components.bigquery.schema import (
    schema_fingerprint,
    schema_from_json,
    schema_to_json,
)
from tasks.components.bigquery.snapshot import snapshot_table
from tasks.storage import scratch
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors, crc32c_b64

NAME = "bigquery"
DATASET_ENTRY = "_dataset"
VIEW_TYPES = ("VIEW", "MATERIALIZED_VIEW")
METHODS = ("read", "extract", "snapshot")
FORMATS = ("parquet", "avro")


def clients(settings: BackstopSettings) -> tuple[Any, Any]:
    return bigquery_client(settings.project, location=settings.location), bigquery_read_client()


# -- backup --------------------------------------------------------------------------------
def backup_method(settings: BackstopSettings, method: str | None = None) -> str:
    """The backup method of a run: `method`, else settings.bigquery_method, else "read"."""
    chosen = str(method or settings.bigquery_method or "read")
    if chosen not in METHODS:
        raise InvalidInput(f"unknown BigQuery backup method {chosen!r}: choose one of {', '.join(METHODS)}")
    return chosen


def data_format(settings: BackstopSettings, method: str, chosen: str | None = None) -> str:
    """The table data format of a run: `chosen`, else settings.bigquery_format, else "parquet".

    Avro is written by the "read" method only (an extract job is Parquet; a snapshot has no files).
    """
    fmt = str(chosen or getattr(settings, "bigquery_format", None) or "parquet").lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown BigQuery data format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "avro" and method == "extract":
        raise InvalidInput("BigQuery data format 'avro' needs method 'read' (extract jobs write Parquet)")
    return fmt if method == "read" else "parquet"


def list_tables(client: Any, project: str, dataset: str, only: list[str] | None = None) -> list[str]:
    """Table and view ids of `dataset` (NotFound names a missing dataset or table)."""
    check_dataset(dataset)
    with converted_errors(f"BigQuery dataset {project}.{dataset}"):
        names = sorted(
            t.table_id for t in client.list_tables(f"{project}.{dataset}", timeout=TIMEOUT, retry=RETRY)
        )
    if only:
        missing = [check_table(t) for t in only if t not in names]
        if missing:
            raise NotFound(f"BigQuery table(s) {', '.join(missing)} not found in dataset {project}.{dataset}")
        names = sorted(set(only))
    return names


def backup_dataset_metadata(
    client: Any, store: BackupStore, manifest: BackupManifest, dataset: str
) -> ManifestEntry:
    """Store dataset.json (labels, description, expirations, access entries)."""
    with converted_errors(f"BigQuery dataset {client.project}.{dataset}"):
        ds = client.get_dataset(f"{client.project}.{dataset}", timeout=TIMEOUT, retry=RETRY)
    meta = {
        "kind": "dataset",
        "labels": dict(ds.labels or {}),
        "description": ds.description,
        "friendly_name": ds.friendly_name,
        "location": ds.location,
        "default_table_expiration_ms": ds.default_table_expiration_ms,
        "default_partition_expiration_ms": ds.default_partition_expiration_ms,
        "access_entries": [entry.to_api_repr() for entry in ds.access_entries or []],
    }
    data = json.dumps(meta, indent=1, sort_keys=True, default=str).encode()
    key = manifest.folder + "dataset.json"
    store.put_bytes(key, data, content_type="application/json")
    return ManifestEntry(
        name=DATASET_ENTRY, stored_key=key, size=len(data), crc32c=crc32c_b64(data), metadata=meta
    )


def table_metadata(table: Any) -> dict[str, Any]:
    """What restore needs to recreate a table (or view) as it was."""
    expires: datetime | None = table.expires
    return {
        "kind": "view" if table.table_type in VIEW_TYPES else "table",
        "table_type": table.table_type,
        "schema": schema_to_json(table.schema),
        "fingerprint": schema_fingerprint(schema_to_json(table.schema)),
        "time_partitioning": table.time_partitioning.to_api_repr() if table.time_partitioning else None,
        "range_partitioning": table._properties.get("rangePartitioning"),
        "clustering_fields": table.clustering_fields,
        "require_partition_filter": table.require_partition_filter,
        "labels": dict(table.labels or {}),
        "description": table.description,
        "friendly_name": table.friendly_name,
        "expires": expires.isoformat() if expires else None,
        "view_query": table.view_query,
        "mview_query": table.mview_query if table.table_type == "MATERIALIZED_VIEW" else None,
    }


def backup_table(
    settings: BackstopSettings,
    store: BackupStore,
    manifest: BackupManifest,
    dataset: str,
    table_id: str,
    snapshot_time: datetime,
    method: str = "read",
    data_format: str = "parquet",
) -> list[ManifestEntry]:
    """Back up one table (Parquet part files, or one Avro file) or view (SQL); returns its manifest entries.

    The first entry is named after the table and carries its metadata; further part files of a big
    table are entries named `<table>/part-NNNNN` with metadata kind "part".
    """
    client, read_client = clients(settings)
    project = settings.project
    with converted_errors(f"BigQuery table {project}.{dataset}.{table_id}"):
        table = client.get_table(f"{project}.{dataset}.{table_id}", timeout=TIMEOUT, retry=RETRY)
    meta = table_metadata(table)
    if meta["kind"] == "view":
        if not (meta["view_query"] or meta["mview_query"]):
            meta["view_query"] = view_definition(client, project, dataset, table_id)
        data = (meta["view_query"] or meta["mview_query"] or "").encode()
        key = f"{manifest.folder}views/{table_id}.sql"
        store.put_bytes(key, data, content_type="application/sql")
        return [
            ManifestEntry(
                name=table_id, stored_key=key, size=len(data), crc32c=crc32c_b64(data), metadata=meta
            )
        ]
    if method == "snapshot":
        return [snapshot_table(client, settings, store, manifest, dataset, table, meta)]
    prefix = f"{manifest.folder}tables/{table_id}/"
    if method == "extract":
        return [_extract_table(client, store, prefix + "part-00000.parquet", table, meta)]
    parts: list[ManifestEntry] = []
    suffix = ".avro" if data_format == "avro" else ".parquet"
    content_type = "application/avro" if data_format == "avro" else "application/vnd.apache.parquet"

    def upload(index: int, path: str, rows: int) -> None:
        key = f"{prefix}part-{index:05d}{suffix}"
        crc = bqio.file_crc32c(path)
        blob = store.put_file(key, path, content_type=content_type)
        if blob.crc32c and blob.crc32c != crc:
            raise Conflict(f"upload of {store.where(key)} stored crc32c {blob.crc32c}, the file has {crc}")
        name = table_id if index == 0 else f"{table_id}/part-{index:05d}"
        part_meta = meta if index == 0 else {"kind": "part", "table": table_id}
        parts.append(ManifestEntry(name=name, stored_key=key, size=os.path.getsize(path), crc32c=crc, rows=rows,
                                   metadata=part_meta))  # fmt: skip
        os.unlink(path)

    # The count as of the snapshot time does not depend on when it runs: it runs beside the read.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigquery-count") as counter:
        counted = counter.submit(
            history.count_as_of, client, project, dataset, table_id, snapshot_time, live_on_emulator=True
        )
        digest = bqio.read_to_files(
            read_client, project, dataset, table_id, snapshot_time, meta["schema"], data_format, upload
        )
        expected = counted.result()
    if not parts:  # an empty table still gets a file
        with scratch.directory("backstop-bq-") as directory:
            empty = os.path.join(directory, "part-00000.parquet")
            _write_empty(empty, meta["schema"])
            upload(0, empty, 0)
    if expected is not None and expected != digest.rows:
        raise Conflict(
            f"BigQuery table {project}.{dataset}.{table_id} changed during the backup: read {digest.rows} rows, "
            f"it held {expected} at {snapshot_time.isoformat()}; run the backup again"
        )
    if isinstance(digest, GroupDigests) and len(digest.parts) == len(parts):
        for part, groups in zip(parts, digest.parts, strict=True):
            part.metadata["group_digests"] = groups
    parts[0].metadata.update(  # the entry holds its own copy of `meta`
        content_digest=digest.hexdigest,
        digest_scheme=DIGEST_SCHEME,
        rows_at_snapshot=expected,
        table_rows=digest.rows,
        parts=len(parts),
        format=data_format,
    )
    return parts


def view_definition(client: Any, project: str, dataset: str, view: str) -> str:
    """A view's SQL from INFORMATION_SCHEMA (for services whose tables.get omits `view.query`)."""
    from google.cloud import bigquery

    sql = (
        f"SELECT view_definition FROM `{project}.{dataset}`.INFORMATION_SCHEMA.VIEWS WHERE table_name = @name"
    )
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("name", "STRING", view)])
    with converted_errors(f"reading the SQL of view {project}.{dataset}.{view}"):
        rows = list(
            client.query(sql, job_config=config, timeout=TIMEOUT, retry=RETRY).result(timeout=TIMEOUT)
        )
    if not rows:
        raise NotFound(f"SQL of view {project}.{dataset}.{view} not found")
    return str(rows[0][0])


def _write_empty(path: str, schema: list[dict[str, Any]]) -> None:
    """An empty table still gets a Parquet file (with the Arrow schema BigQuery's client derives)."""
    import pyarrow.parquet as pq
    from google.cloud.bigquery import _pandas_helpers

    arrow_schema = _pandas_helpers.bq_to_arrow_schema(schema_from_json(schema))
    pq.write_table(arrow_schema.empty_table(), path)


def _extract_table(
    client: Any, store: BackupStore, key: str, table: Any, meta: dict[str, Any]
) -> ManifestEntry:
    """Server-side extract job (the Google Cloud path): Parquet written straight into the backup bucket."""
    from google.cloud import bigquery

    config = bigquery.ExtractJobConfig(destination_format="PARQUET", compression="ZSTD")
    with converted_errors(f"extracting BigQuery table {table.full_table_id}"):
        job = client.extract_table(table, store.where(key), job_config=config, timeout=TIMEOUT, retry=RETRY)
        job.result(timeout=bqio.READ_TIMEOUT, retry=RETRY)
    blob = store.stat(key)
    if blob is None:
        raise NotFound(f"extract job wrote no file at {store.where(key)}")
    meta.update(table_rows=int(table.num_rows or 0), parts=1)
    return ManifestEntry(
        name=table.table_id,
        stored_key=key,
        size=int(blob.size),
        crc32c=blob.crc32c,
        rows=table.num_rows,
        metadata=meta,
    )


def source_state(
    settings: BackstopSettings,
    dataset: str,
    manifest: BackupManifest,
    entries: list[ManifestEntry],
    method: str,
) -> dict[str, Any]:
    """The state the backup was taken from: the snapshot time and rows per table (and the method)."""
    return {
        "project": settings.project,
        "dataset": dataset,
        "method": method,
        "snapshot_time": manifest.started_at.isoformat(),
        "tables": {
            e.name: e.metadata.get("table_rows") for e in entries if e.metadata.get("kind") == "table"
        },
        "views": sorted(e.name for e in entries if e.metadata.get("kind") == "view"),
    }
