"""The BigQuery component: dataset backup to Parquet (or Avro), validation, and restore.

Backup of one dataset (source = dataset id): `dataset.json` (labels, description, default
expirations, access entries), per table a Parquet file `tables/<table>/part-00000.parquet`
(or with format "avro" one Avro file `part-00000.avro`) streamed from the Storage Read API
(method "read"), written by an extract job (method
"extract", the Google Cloud path) or kept as a native table snapshot inside BigQuery (method
"snapshot", see tasks/components/bigquery/snapshot.py), per view its SQL in `views/<view>.sql`. Each manifest entry
carries the table's schema JSON, partitioning, clustering, labels, row count and a content digest
(with its `digest_scheme`: tasks/components/bigquery/digest.py says what it covers).
Every table is read as of the backup's start (`snapshot_time`, recorded in `source_state`); the
row count as of that time comes from a `FOR SYSTEM_TIME AS OF` count and must equal the rows read.

What the local emulator (bqemulator 1.4.0) cannot do, so is not exercised by the tests:
- BIGNUMERIC columns (table creation fails with HTTP 500; a restore of such a table fails at once
  with an error naming the table and the type). A RECORD nested in a RECORD is created fine.
- Avro (`format="avro"`, method "read"; tasks/components/bigquery/avro.py): the emulator loads Avro through DuckDB's
  `avro` extension (installed from its PyPI wheel by localdev.platform.ensure_duckdb_extensions), but a
  file with a NUMERIC (Avro decimal) column goes through its fastavro fallback, which cannot take
  TIME (time-micros) in the same file: such a table fails to load on the emulator (fine on BigQuery).
  Every other listed type round-trips through Avro on the emulator, TIME too in a table without NUMERIC.
- CMEK: `encryption_configuration` is accepted and ignored (reads back None).
- Read-session `snapshot_time` is ignored (the current table is read); Backstop detects a table
  that changed during the backup by comparing the rows read with the time-travel count.
- GEOGRAPHY comes back from the Storage Read API as WKB; Backstop writes WKT text (as BigQuery's own
  Parquet export does) and the load job turns it back into GEOGRAPHY.
- Extract jobs write to a local directory (BQEMU_GCS_LOCAL_ROOT), not to Cloud Storage, and fail on
  wildcard URIs: `method="extract"` is implemented for Google Cloud but not tested here.
- Multipart uploads for load jobs are refused; loads use resumable uploads.
- `tables.get` omits a view's SQL; it is read from INFORMATION_SCHEMA.VIEWS instead.
- `num_rows` stays 0 after DML inserts; "is this table empty" reads one row instead.
Everything else in the list round-trips row for row on the emulator (tests/components/bigquery/test_bigquery.py):
INT64, NUMERIC, FLOAT64 (NaN, +/-inf), BOOL, STRING (non-ASCII), BYTES, DATE, DATETIME, TIME,
TIMESTAMP, JSON, GEOGRAPHY, ARRAY, STRUCT (one level, with repeated fields), REPEATED STRUCT,
NULLs and empty tables.
"""

from __future__ import annotations

from typing import Any

from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.names import check_dataset
from blocks.settings import BackstopSettings
from tasks.components.bigquery.backup import (
    NAME,
    backup_dataset_metadata,
    backup_method,
    backup_table,
    clients,
    data_format,
    list_tables,
    source_state,
)
from tasks.components.bigquery.options import NOUN, PART, BigQueryOptions
from tasks.components.bigquery.plan import plan_dataset_restore
from tasks.components.bigquery.restore import apply_dataset_restore, validate_table, verify_restored
from tasks.components.bigquery.snapshot import delete_snapshots, missing_snapshots
from tasks.engine.protocol import BackupPlan as LifecyclePlan
from tasks.engine.protocol import Context, LifecycleMethods, RestorePlan, RestoreRequest
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors


class BigQueryComponent(LifecycleMethods):
    """BigQuery datasets: source = dataset id; a unit = one table or view."""

    name = NAME
    noun, part = NOUN, PART
    Options = BigQueryOptions

    def sources(self, settings: BackstopSettings) -> list[str]:
        return list(settings.bigquery_datasets)

    def scope(self, options: Any) -> list[str] | None:
        """A backup with `--table` holds those tables and views of the dataset only."""
        return sorted(set(options.tables)) if options.tables else None

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        return check_dataset(source)

    check_target = check_source

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> LifecyclePlan:
        client, _ = clients(ctx.settings)
        names = list_tables(client, ctx.settings.project, manifest.source, ctx.options.tables)
        method = backup_method(ctx.settings, ctx.options.method)
        fmt = data_format(ctx.settings, method, ctx.options.format)
        metadata = backup_dataset_metadata(client, ctx.store, manifest, manifest.source)
        units = [(name, method, fmt) for name in names]
        return LifecyclePlan(
            units=units,
            carried=[metadata],
            describe=f"{manifest.source}: {len(names)} tables / views ({method}, {fmt})",
        )

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: tuple[str, str, str]
    ) -> tuple[list[ManifestEntry], dict[str, Any]]:
        name, method, fmt = unit
        entries = backup_table(
            ctx.settings, ctx.store, manifest, manifest.source, name, manifest.started_at, method, fmt
        )
        return entries, {}

    def finish(
        self, ctx: Context, manifest: BackupManifest, plan: LifecyclePlan, entries: list[ManifestEntry]
    ) -> dict[str, Any]:
        method = backup_method(ctx.settings, ctx.options.method)
        return source_state(ctx.settings, manifest.source, manifest, entries, method)

    def discard(self, ctx: Context, manifest: BackupManifest, entries: list[ManifestEntry]) -> None:
        """Drop the snapshot tables an abandoned snapshot-method backup made."""
        self.delete(ctx.settings, manifest.model_copy(update={"entries": entries}))

    def gone_outside(self, ctx: Context, manifest: BackupManifest) -> list[str]:
        """The snapshot tables of a "snapshot" backup that no longer exist (expired or dropped)."""
        taken = [e for e in manifest.entries if e.metadata.get("snapshot_table")]
        return missing_snapshots(clients(ctx.settings)[0], taken) if taken else []

    def check(
        self, ctx: Context, manifest: BackupManifest, sample_percent: float, damaged: set[str]
    ) -> list[str]:
        tables = {name.split("/")[0] for name in damaged}
        problems: list[str] = []
        for entry in manifest.entries:
            if entry.name not in tables:
                problems += validate_table(
                    ctx.settings, ctx.store, manifest, entry, sample_percent, compare_source=not ctx.just_read
                )
        return problems

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        return plan_dataset_restore(
            ctx.settings,
            manifest,
            request.target or manifest.source,
            request.only,
            request.options.schema_only,
            request.exact,
            request.exclude,
        )

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        apply_dataset_restore(ctx.settings, ctx.store, manifest, plan, request.overwrite)

    def verify_restored(
        self,
        ctx: Context,
        manifest: BackupManifest,
        target: str,
        only: list[str] | None,
        exclude: list[str] | None = None,
    ) -> list[str]:
        return verify_restored(ctx.settings, manifest, target, only, ctx.options.schema_only, exclude)

    def delete(self, settings: BackstopSettings, manifest: BackupManifest) -> None:
        """Free what a backup holds outside the bucket: the snapshot tables of a "snapshot" backup."""
        if any(e.metadata.get("snapshot_table") for e in manifest.entries):
            delete_snapshots(clients(settings)[0], manifest.entries)

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        return check_dataset(f"{manifest.source}__drill_{suffix}".replace("-", "_"))

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        client, _ = clients(settings)
        with converted_errors(f"deleting BigQuery dataset {settings.project}.{check_dataset(target)}"):
            client.delete_dataset(
                f"{settings.project}.{target}",
                delete_contents=True,
                not_found_ok=True,
                timeout=TIMEOUT,
                retry=RETRY,
            )


COMPONENT = BigQueryComponent()
