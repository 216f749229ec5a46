"""Creating what a BigQuery restore writes into: the dataset (metadata reapplied) and each table.

Shared by restores from backup files, from snapshots and straight from time travel.
"""

from __future__ import annotations

from typing import Any

from backstop.core.errors import BackstopError, InvalidInput, NotFound, Unavailable
from tasks.components.bigquery.schema import retarget_sql, risky_columns, schema_from_json, schema_to_json
from tasks.components.bigquery.snapshot import encryption
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors


def ensure_dataset(
    client: Any, project: str, target: str, meta: dict[str, Any], same: bool, notes: list[str] | None = None
) -> bool:
    """Create the target dataset from the saved metadata if missing; returns True when created.

    An existing dataset gets the saved labels, description and (when it is the backed-up dataset
    itself) access entries reapplied; entries the service refuses are appended to `notes`.
    """
    from google.cloud import bigquery

    with converted_errors(f"BigQuery dataset {project}.{target}"):
        if resource_exists(lambda: client.get_dataset(f"{project}.{target}", timeout=TIMEOUT, retry=RETRY)):
            if meta:
                reapply_dataset_metadata(
                    client, f"{project}.{target}", meta, same, notes if notes is not None else []
                )
            return False
        ds = bigquery.Dataset(f"{project}.{target}")
        ds.labels = meta.get("labels") or {}
        ds.description = meta.get("description")
        ds.location = meta.get("location") or client.location
        ds.default_table_expiration_ms = meta.get("default_table_expiration_ms")
        ds.default_partition_expiration_ms = meta.get("default_partition_expiration_ms")
        if same and meta.get("access_entries"):
            ds.access_entries = [bigquery.AccessEntry.from_api_repr(e) for e in meta["access_entries"]]
        client.create_dataset(ds, exists_ok=True, timeout=TIMEOUT, retry=RETRY)
    return True


def reapply_dataset_metadata(
    client: Any, ref: str, meta: dict[str, Any], same: bool, notes: list[str]
) -> None:
    """Labels (merged) and description onto an existing dataset, then each missing access entry in turn."""
    from google.cloud import bigquery

    ds = client.get_dataset(ref, timeout=TIMEOUT, retry=RETRY)
    ds.labels = dict(ds.labels or {}) | dict(meta.get("labels") or {})
    ds.description = meta.get("description")
    ds = client.update_dataset(ds, ["labels", "description"], timeout=TIMEOUT, retry=RETRY)
    if not same:
        return
    for saved in meta.get("access_entries") or []:
        entry = bigquery.AccessEntry.from_api_repr(saved)
        if entry in ds.access_entries:
            continue
        ds.access_entries = [*ds.access_entries, entry]
        try:
            with converted_errors(f"access entry {saved} on BigQuery dataset {ref}"):
                ds = client.update_dataset(ds, ["access_entries"], timeout=TIMEOUT, retry=RETRY)
        except BackstopError as exc:  # refused: report it, restore the rest
            notes.append(f"dataset {ref}: access entry not reapplied: {exc}")
            ds = client.get_dataset(ref, timeout=TIMEOUT, retry=RETRY)


def resource_exists(fn: Any) -> bool:
    try:
        fn()
    except NotFound:
        return False
    except Exception as exc:
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.NotFound):
            return False
        raise
    return True


def build_table(
    project: str, target: str, name: str, meta: dict[str, Any], source: str, kms_key_name: str | None = None
) -> Any:
    """A Table object recreated from the saved metadata (views get retargeted SQL; tables the CMEK key)."""
    from google.cloud import bigquery

    table = bigquery.Table(f"{project}.{target}.{name}")
    if meta["kind"] == "view":
        if meta.get("mview_query"):
            table.mview_query = retarget_sql(meta["mview_query"], source, target, project)
        else:
            table.view_query = retarget_sql(meta.get("view_query") or "", source, target, project)
    else:
        table.schema = schema_from_json(meta["schema"])
        if meta.get("time_partitioning"):
            table.time_partitioning = bigquery.TimePartitioning.from_api_repr(meta["time_partitioning"])
        if meta.get("range_partitioning"):
            table._properties["rangePartitioning"] = meta["range_partitioning"]
        table.clustering_fields = meta.get("clustering_fields")
        if meta.get("require_partition_filter"):
            table.require_partition_filter = True
        if kms_key_name:
            table.encryption_configuration = encryption(kms_key_name)
    table.labels = meta.get("labels") or {}
    table.description = meta.get("description")
    table.friendly_name = meta.get("friendly_name")
    return table


def create_table(client: Any, table: Any) -> None:
    """Create `table`. When its schema has types some services cannot create (BIGNUMERIC), an HTTP 500
    is not retried: it fails at once naming the table and those columns."""
    from google.api_core import exceptions as gexc
    from google.api_core.retry import if_transient_error

    ref = f"{table.project}.{table.dataset_id}.{table.table_id}"
    risky = risky_columns(schema_to_json(table.schema)) if table.schema else []
    retry = RETRY
    if risky:
        retry = RETRY.with_predicate(
            lambda e: if_transient_error(e) and not isinstance(e, gexc.InternalServerError)
        )
    try:
        with converted_errors(f"BigQuery table {ref}"):
            client.create_table(table, timeout=TIMEOUT, retry=retry)
    except Unavailable as exc:
        if not risky or not isinstance(exc.__cause__, gexc.InternalServerError):
            raise
        raise InvalidInput(
            f"BigQuery could not create table {ref} with column(s) {', '.join(risky)} (HTTP 500): this BigQuery "
            "service does not support that type (the local emulator cannot create BIGNUMERIC); restore this "
            "table on Google BigQuery or with another column type"
        ) from exc
