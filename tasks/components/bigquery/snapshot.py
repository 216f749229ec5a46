"""BigQuery native table snapshots: the `method="snapshot"` backup, its validation, restore and deletion.

A snapshot backup keeps table data inside BigQuery: each table gets a copy job with operation type
SNAPSHOT into the dataset `<source>_backstop_snapshots` (created beside the source, same location),
named `<table>__<backup id>`, with an expiration past the longest Backstop's retention keeps the
backup (`snapshot_days`: a safety net; prune deletes it explicitly) and,
when `settings.kms_key_name` is set, that CMEK key. The backup bucket holds a small JSON description
per table (`snapshots/<table>.json`, the entry's stored_key) so catalog, validation and prune treat
snapshot backups like the others. Restore is a copy job with operation type RESTORE.

On the local emulator (bqemulator 1.4.0), measured:
- The copy job SNAPSHOT and RESTORE work; the snapshot keeps schema, partitioning and clustering
  (not labels or description: restore reapplies those from the manifest) and is immutable (DML refused).
- `CREATE SNAPSHOT TABLE ... CLONE` parses only without `FOR SYSTEM_TIME AS OF` and without `OPTIONS`,
  and a `table@<millis>` time decorator is "not found", so the snapshot is taken of the current table;
  as for the "read" method, the snapshot's row count must equal the source's count as of the backup
  start (time travel), else the table changed during the backup and the run fails (nothing committed).
  On Google Cloud the copy job has the same semantics, so the behaviour is identical there.
- Expiration and encryption configuration are accepted and ignored (read back as None): the tests
  check that a CMEK run succeeds and records the key, not that the emulator encrypts.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from backstop.core.errors import Conflict, NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.retention import RetentionPolicy
from blocks.settings import BackstopSettings
from tasks.components.bigquery import data as bqio
from tasks.components.bigquery import history
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors, crc32c_b64

# A snapshot expires this many days after the longest Backstop's retention keeps its backup (a
# safety net: prune deletes it with its manifest, through BigQueryComponent.delete), so no kept
# backup outlives its snapshot; retention with no time bound gives snapshots no expiration.
EXPIRY_SLACK_DAYS = 7
SUFFIX = "_backstop_snapshots"


def snapshot_days(settings: BackstopSettings, source: str) -> int | None:
    """Days a snapshot of `source` lives: Backstop's retention of bigquery/<source> plus the slack."""
    days = RetentionPolicy.from_settings(settings.retention_for("bigquery", source)).kept_for_days()
    return days + EXPIRY_SLACK_DAYS if days else None


def snapshot_dataset(source: str) -> str:
    """The dataset holding the snapshots of `source`'s tables."""
    return f"{source}{SUFFIX}"


def snapshot_name(table: str, backup_id: str) -> str:
    return f"{table}__{backup_id.replace('-', '_')}"


def encryption(kms_key_name: str | None) -> Any:
    """An EncryptionConfiguration for `kms_key_name`, or None."""
    if not kms_key_name:
        return None
    from google.cloud import bigquery

    return bigquery.EncryptionConfiguration(kms_key_name=kms_key_name)


def ensure_snapshot_dataset(client: Any, project: str, source: str, location: str | None) -> str:
    """Create `<source>_backstop_snapshots` if missing (in the source's location); return its id."""
    from google.cloud import bigquery

    name = snapshot_dataset(source)
    ds = bigquery.Dataset(f"{project}.{name}")
    ds.location = location or client.location
    ds.description = f"Backstop table snapshots of dataset {source} (deleted by prune)"
    ds.labels = {"backstop": "snapshots"}
    with converted_errors(f"creating BigQuery dataset {project}.{name}"):
        client.create_dataset(ds, exists_ok=True, timeout=TIMEOUT, retry=RETRY)
    return name


def snapshot_table(
    client: Any,
    settings: BackstopSettings,
    store: BackupStore,
    manifest: BackupManifest,
    dataset: str,
    table: Any,
    meta: dict[str, Any],
) -> ManifestEntry:
    """Snapshot one table (copy job SNAPSHOT) and store its JSON description; return its entry.

    Raises:
        Conflict: the table changed between the backup start and the snapshot (the snapshot is dropped).
    """
    from google.cloud import bigquery

    project = settings.project
    holder = ensure_snapshot_dataset(client, project, dataset, table.location)
    ref = f"{project}.{holder}.{snapshot_name(table.table_id, manifest.backup_id)}"
    days = snapshot_days(settings, dataset)
    expires = None if days is None else manifest.started_at + timedelta(days=days)
    config = bigquery.CopyJobConfig(
        operation_type="SNAPSHOT",
        destination_expiration_time=None if expires is None else expires.isoformat(),
        destination_encryption_configuration=encryption(settings.kms_key_name),
    )
    source = f"{project}.{dataset}.{table.table_id}"
    with converted_errors(f"snapshotting BigQuery table {source} to {ref}"):
        job = client.copy_table(source, ref, job_config=config, timeout=TIMEOUT, retry=RETRY)
        job.result(timeout=bqio.READ_TIMEOUT, retry=RETRY)
    rows = count_rows(client, ref)
    expected = history.count_as_of(
        client, project, dataset, table.table_id, manifest.started_at, live_on_emulator=True
    )
    if expected is not None and expected != rows:
        drop_snapshot(client, ref)
        raise Conflict(
            f"BigQuery table {source} changed during the backup: its snapshot holds {rows} rows, it held "
            f"{expected} at {manifest.started_at.isoformat()}; run the backup again"
        )
    meta = meta | {
        "storage": "snapshot",
        "snapshot_table": ref,
        "snapshot_expires": None if expires is None else expires.isoformat(),
        "kms_key_name": settings.kms_key_name,
        "table_rows": rows,
        "rows_at_snapshot": expected,
        "parts": 0,
    }
    description = {k: meta[k] for k in ("snapshot_table", "snapshot_expires", "kms_key_name", "table_rows")}
    data = json.dumps(description | {"source": source, "backup_id": manifest.backup_id}, indent=1).encode()
    key = f"{manifest.folder}snapshots/{table.table_id}.json"
    store.put_bytes(key, data, content_type="application/json")
    return ManifestEntry(
        name=table.table_id, stored_key=key, size=len(data), crc32c=crc32c_b64(data), rows=rows, metadata=meta
    )


def count_rows(client: Any, ref: str) -> int:
    """COUNT(*) of a table (num_rows can lag behind DML on some services)."""
    with converted_errors(f"counting rows of BigQuery table {ref}"):
        result = client.query(f"SELECT COUNT(*) FROM `{ref}`", timeout=TIMEOUT, retry=RETRY)
        return int(list(result.result(timeout=TIMEOUT, retry=RETRY))[0][0])


def drop_snapshot(client: Any, ref: str) -> None:
    with converted_errors(f"deleting BigQuery snapshot {ref}"):
        client.delete_table(ref, not_found_ok=True, timeout=TIMEOUT, retry=RETRY)


def validate_snapshot(client: Any, entry: ManifestEntry) -> list[str]:
    """Problems of one snapshot entry: the snapshot table exists, is a snapshot, holds the manifest's rows."""
    ref = str(entry.metadata["snapshot_table"])
    try:
        with converted_errors(f"BigQuery snapshot {ref}"):
            table = client.get_table(ref, timeout=TIMEOUT, retry=RETRY)
    except NotFound:
        return [f"table {entry.name!r}: snapshot {ref} no longer exists"]
    problems = []
    if table.table_type != "SNAPSHOT":
        problems.append(f"table {entry.name!r}: {ref} is a {table.table_type}, not a SNAPSHOT")
    rows = count_rows(client, ref)
    if rows != int(entry.metadata.get("table_rows", -1)):
        problems.append(
            f"table {entry.name!r}: snapshot {ref} holds {rows} rows, manifest says {entry.metadata.get('table_rows')}"
        )
    return problems


def missing_snapshots(client: Any, entries: list[ManifestEntry]) -> list[str]:
    """One line per entry whose snapshot table no longer exists."""
    gone = []
    for entry in entries:
        ref = str(entry.metadata["snapshot_table"])
        try:
            with converted_errors(f"BigQuery snapshot {ref}"):
                client.get_table(ref, timeout=TIMEOUT, retry=RETRY)
        except NotFound:
            gone.append(f"table {entry.name!r}: snapshot {ref} no longer exists")
    return gone


def restore_from_snapshot(
    client: Any, entry: ManifestEntry, target_ref: str, kms_key_name: str | None
) -> int:
    """Copy job RESTORE of the entry's snapshot into `target_ref` (which must not exist); returns rows."""
    from google.cloud import bigquery

    ref = str(entry.metadata["snapshot_table"])
    config = bigquery.CopyJobConfig(
        operation_type="RESTORE",
        write_disposition="WRITE_EMPTY",
        destination_encryption_configuration=encryption(kms_key_name),
    )
    with converted_errors(f"restoring BigQuery snapshot {ref} into {target_ref}"):
        job = client.copy_table(ref, target_ref, job_config=config, timeout=TIMEOUT, retry=RETRY)
        job.result(timeout=bqio.READ_TIMEOUT, retry=RETRY)
        table = client.get_table(target_ref, timeout=TIMEOUT, retry=RETRY)
        # a snapshot keeps schema, partitioning and clustering; labels and descriptions come from the manifest
        meta = entry.metadata
        table.labels = meta.get("labels") or {}
        table.description = meta.get("description")
        table.friendly_name = meta.get("friendly_name")
        client.update_table(table, ["labels", "description", "friendly_name"], timeout=TIMEOUT, retry=RETRY)
    return count_rows(client, target_ref)


def delete_snapshots(client: Any, entries: list[ManifestEntry]) -> list[str]:
    """Drop every snapshot table the entries hold (already gone is fine); return their ids."""
    dropped = []
    for entry in entries:
        ref = entry.metadata.get("snapshot_table")
        if ref:
            drop_snapshot(client, str(ref))
            dropped.append(str(ref))
    return dropped
