"""BigQuery flows: backup (one task per table), validate (one task per table), restore.

A flow is a short composition of the functions in tasks/bigquery.py and tasks/bigquery_restore.py.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from backstop.errors import InvalidInput
from backstop.manifest import BackupManifest, ManifestEntry
from backstop.names import check_dataset, parse_time
from backstop.report import human_bytes
from blocks.settings import BackstopSettings, load_settings
from flows.approval import approve_overwrite
from flows.hooks import HOOKS
from tasks import bigquery as bq
from tasks import bigquery_restore as bqr
from tasks import catalog
from tasks.context import open_store
from tasks.store import BackupStore


@task(name="backup-bigquery-table", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def backup_table(
    settings: BackstopSettings,
    manifest: BackupManifest,
    dataset: str,
    table: str,
    method: str,
    data_format: str = "parquet",
) -> tuple[list[ManifestEntry], float]:
    """Back up one table (Parquet part files or an Avro file) or view (SQL)."""
    start = time.monotonic()
    entries = bq.backup_table(
        settings, open_store(settings), manifest, dataset, table, manifest.started_at, method, data_format
    )
    return entries, time.monotonic() - start


@task(name="validate-bigquery-table", cache_policy=NO_CACHE)
def validate_table(
    settings: BackstopSettings, manifest: BackupManifest, entry: ManifestEntry, percent: float
) -> tuple[list[str], float]:
    start = time.monotonic()
    problems = bqr.validate_table(settings, open_store(settings), manifest, entry, percent)
    return problems, time.monotonic() - start


def _row(entries: list[ManifestEntry], seconds: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    entry = entries[0]
    return {
        "table": entry.name,
        "kind": entry.metadata.get("kind"),
        "rows": entry.metadata.get("table_rows"),
        "files": len(entries),
        "bytes": human_bytes(sum(e.size for e in entries)),
        "seconds": round(seconds, 2),
    } | (extra or {})


def backup_one(
    settings: BackstopSettings,
    store: BackupStore,
    dataset: str,
    tables: list[str] | None,
    method: str | None = None,
    data_format: str | None = None,
) -> list[dict[str, Any]]:
    """Back up one dataset: metadata, then one task per table, commit last (nothing committed on error)."""
    log = get_run_logger()
    client, _ = bq.clients(settings)
    names = bq.list_tables(client, settings.project, dataset, tables)
    method = bq.backup_method(settings, method)
    fmt = bq.data_format(settings, method, data_format)
    options = {"tables": tables, "method": method, "format": fmt}
    manifest = catalog.begin_backup(store, bq.NAME, dataset, options)
    entries: list[ManifestEntry] = []
    try:
        entries.append(bq.backup_dataset_metadata(client, store, manifest, dataset))
        progress: Any = create_progress_artifact(0.0, description=f"BigQuery backup of {dataset}")
        rows = []
        futures = [backup_table.submit(settings, manifest, dataset, name, method, fmt) for name in names]
        for done, future in enumerate(as_completed(futures), 1):
            parts, seconds = future.result()
            name = parts[0].name
            entries += parts
            rows.append(_row(parts, seconds))
            log.info("%s.%s: %s rows, %s in %.2f s (%d/%d)", dataset, name, rows[-1]["rows"], rows[-1]["bytes"],
                     seconds, done, len(names))  # fmt: skip
            update_progress_artifact(progress, 100.0 * done / max(1, len(names)))
        committed = catalog.commit_backup(
            store, manifest, entries, bq.source_state(settings, dataset, manifest, entries)
        )
    except BaseException:
        bq.discard_backup(settings, store, manifest, entries)  # drops snapshot tables made so far
        raise
    log.info("backup %s of %s committed: %d tables/views", committed.backup_id, dataset, len(names))
    return sorted(
        (r | {"dataset": dataset, "backup_id": committed.backup_id} for r in rows),
        key=lambda r: str(r["table"]),
    )


@flow(name="backup-bigquery", **HOOKS)
def backup_bigquery(
    datasets: list[str] | None = None,
    tables: list[str] | None = None,
    settings_block: str = "default",
    method: str | None = None,
    data_format: str | None = None,
) -> list[dict[str, Any]]:
    """Back up BigQuery datasets (all tables, or `tables`) to Parquet or Avro at one point in time per
    dataset.

    Args:
        datasets: dataset ids in the settings' project.
        tables: only these tables / views (each must exist in every dataset given).
        settings_block: name of the Backstop settings block.
        method: "read" (Parquet via the Storage Read API), "extract" (extract jobs) or "snapshot"
            (native table snapshots); default settings.bigquery_method.
        data_format: "parquet" or "avro" (method "read" only); default settings.bigquery_format, else
            "parquet".
    """
    settings = load_settings(settings_block)
    method = bq.backup_method(settings, method)
    data_format = bq.data_format(settings, method, data_format)
    store = open_store(settings)
    rows: list[dict[str, Any]] = []
    for dataset in [check_dataset(d) for d in datasets or settings.bigquery_datasets]:
        rows += backup_one(settings, store, dataset, tables, method, data_format)
    create_table_artifact(rows, key="bigquery-backup-summary", description="BigQuery backup")
    return rows


@flow(name="validate-bigquery", **HOOKS)
def validate_bigquery(
    backup_id: str | None = None,
    dataset: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = "default",
) -> list[dict[str, Any]]:
    """Validate one backup (by id) or the latest of `dataset` (default: every configured dataset)."""
    settings = load_settings(settings_block)
    store = open_store(settings)
    percent = catalog.sample_percent(settings, sample_percent)
    sources = [check_dataset(dataset)] if dataset else settings.bigquery_datasets
    manifests = catalog.backups_to_validate(store, bq.NAME, backup_id, sources)
    rows: list[dict[str, Any]] = []
    for manifest in manifests:
        problems, read_back = catalog.verify_stored(store, manifest, percent)
        damaged = {p.split("'")[1].split("/")[0] for p in problems if "'" in p}
        progress: Any = create_progress_artifact(0.0, description=f"validation of {manifest.backup_id}")
        tables = [e for e in manifest.entries if e.metadata.get("kind") == "table" and e.name not in damaged]
        for done, entry in enumerate(tables, 1):
            found, seconds = validate_table(settings, manifest, entry, percent)
            problems += found
            parts = bqr.parts_of(manifest, entry)
            rows.append(_row(parts, seconds, {"backup_id": manifest.backup_id, "ok": not found}))
            update_progress_artifact(progress, 100.0 * done / len(tables))
        create_table_artifact(rows, key="bigquery-validation", description="BigQuery validation")
        catalog.record_validation(store, manifest, problems, len(manifest.entries), read_back)
    return rows


@flow(name="restore-bigquery", **HOOKS)
def restore_bigquery(
    dataset: str,
    backup_id: str | None = None,
    before: str | None = None,
    target_dataset: str | None = None,
    tables: list[str] | None = None,
    schema_only: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    settings_block: str = "default",
    approved: bool = False,
) -> dict[str, Any]:
    """Restore a dataset (or chosen tables, or only the schema) from a backup id or the latest validated before T."""
    if backup_id and before:
        raise InvalidInput("give a backup id or a time (before), not both")
    approve_overwrite(
        f"restore of dataset {dataset}", overwrite, dry_run, target_dataset in (None, "", dataset), approved
    )
    settings = load_settings(settings_block)
    store = open_store(settings)
    manifest = catalog.resolve_backup(
        store, bq.NAME, check_dataset(dataset), backup_id, parse_time(before) if before else None
    )
    if manifest.source != dataset:
        raise InvalidInput(f"backup {manifest.backup_id} is of dataset {manifest.source!r}, not {dataset!r}")
    report = bqr.restore_backup(
        settings, store, manifest, target_dataset, tables, overwrite, dry_run, schema_only
    )
    rows = [
        {k: a.get(k) for k in ("table", "kind", "action", "rows", "existing")}
        for a in report.actions
        if "table" in a
    ]
    create_table_artifact(rows, key="bigquery-restore-plan" if dry_run else "bigquery-restore",
                          description=f"BigQuery restore of {manifest.backup_id} into {report.target}")  # fmt: skip
    for note in (a["note"] for a in report.actions if a.get("action") == "note"):
        get_run_logger().warning("restore of %s: %s", manifest.backup_id, note)  # e.g. a refused access entry
    get_run_logger().info("restore of %s into %s: %s", manifest.backup_id, report.target, report.summary())
    return report.summary() | {"actions": report.actions}


@flow(name="restore-bigquery-as-of", **HOOKS)
def restore_bigquery_as_of(
    dataset: str,
    as_of: str,
    target_dataset: str | None = None,
    tables: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    settings_block: str = "default",
) -> dict[str, Any]:
    """Point-in-time restore straight from BigQuery (time travel, no backup files) into another dataset.

    Args:
        dataset: the source dataset.
        as_of: the moment (ISO 8601) to copy the tables as of; must be inside the time-travel window.
        target_dataset: default `<dataset>_restored_<yyyymmddThhmmss>`.
        tables: only these tables / views.
        overwrite: replace non-empty tables in the target.
        dry_run: return the plan, change nothing.
        settings_block: name of the Backstop settings block.
    """
    from tasks.bigquery_timetravel import restore_as_of

    settings = load_settings(settings_block)
    report = restore_as_of(
        settings, check_dataset(dataset), parse_time(as_of), target_dataset, tables, overwrite, dry_run
    )
    create_table_artifact(
        report.actions, key="bigquery-restore-as-of", description=f"{dataset} as of {as_of}"
    )
    get_run_logger().info("time-travel restore of %s into %s: %s", dataset, report.target, report.summary())
    return report.summary() | {"actions": report.actions}
