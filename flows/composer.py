"""Cloud Composer flows: backup (DAG bucket, Airflow metadata, environment config), validate, restore.

One task per environment step (backup, validate, restore); the copies inside are batched by
tasks/gcs.py. Schedules: parts=["dags", "config"] daily, parts=["metadata"] hourly.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from backstop.manifest import BackupManifest
from backstop.names import parse_time
from backstop.report import human_bytes
from blocks.settings import BackstopSettings, load_settings
from flows.approval import approve_overwrite
from flows.hooks import HOOKS
from tasks import catalog, composer
from tasks.composer_env import environment_name
from tasks.context import open_store

DEFAULT_PARTS = ["dags", "metadata", "config"]
MAX_ACTION_ROWS = 500


@task(name="backup-composer-environment", cache_policy=NO_CACHE)
def backup_environment(
    settings: BackstopSettings, environment: str, parts: list[str], snapshot: bool | None
) -> BackupManifest:
    """Back up the chosen parts of one environment (commits its manifest last)."""
    manifest = composer.COMPONENT.backup(
        settings, open_store(settings), environment, parts=parts, snapshot=snapshot
    )
    counts = manifest.source_state.get("counts", {})
    get_run_logger().info(
        "%s: backed up %s (%d entries, %s; %s)",
        environment,
        ", ".join(parts),
        len(manifest.entries),
        human_bytes(manifest.total_bytes),
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )
    return manifest


@task(name="validate-composer-backup", cache_policy=NO_CACHE)
def validate_backup(
    settings: BackstopSettings, manifest: BackupManifest, sample_percent: float
) -> BackupManifest:
    return composer.COMPONENT.validate(settings, open_store(settings), manifest, sample_percent)


def summary_row(manifest: BackupManifest) -> dict[str, Any]:
    state = manifest.source_state
    return {
        "environment": manifest.source,
        "backup_id": manifest.backup_id,
        "parts": ", ".join(state.get("parts", [])),
        "objects": state.get("objects", 0),
        "copied": state.get("copied", 0),
        **{k: v for k, v in state.get("counts", {}).items()},
        "size": human_bytes(manifest.total_bytes),
        "seconds": round(manifest.duration_seconds or 0, 2),
        "status": manifest.status,
    }


def _environments(settings: BackstopSettings, names: list[str] | None) -> list[str]:
    cs = composer.composer_settings(settings)
    chosen = names or cs.environments
    if not chosen:
        from backstop.errors import ConfigError

        raise ConfigError("no Composer environments given and composer.environments is empty in the settings")
    return [environment_name(cs, n) for n in chosen]


@flow(name="backup-composer", **HOOKS)
def backup_composer(
    environments: list[str] | None = None,
    parts: list[str] | None = None,
    snapshot: bool | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = "default",
) -> list[dict[str, Any]]:
    """Back up Cloud Composer environments (default: the settings' composer.environments).

    Args:
        environments: environment short or full names.
        parts: any of "dags" (DAGs, plugins, data), "metadata" (variables, connections, pools),
            "config" (environment config); default all three.
        snapshot: also save a Composer snapshot with the config (default from the settings).
        validate_after: validate each backup after it is committed (a failure fails the run).
        sample_percent: share of stored objects re-read by validation (default from settings).
        settings_block: name of the Backstop settings block.
    """
    settings = load_settings(settings_block)
    chosen_parts = composer.check_parts(parts or DEFAULT_PARTS)
    percent = catalog.sample_percent(settings, sample_percent)
    rows = []
    for environment in _environments(settings, environments):
        manifest = backup_environment(settings, environment, chosen_parts, snapshot)
        if validate_after:
            manifest = validate_backup(settings, manifest, percent)
        rows.append(summary_row(manifest))
    create_table_artifact(rows, key="composer-backup-summary", description="Cloud Composer backup")
    return rows


@flow(name="validate-composer", **HOOKS)
def validate_composer(
    backup_id: str | None = None,
    environment: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = "default",
) -> list[dict[str, Any]]:
    """Validate one backup (by id), or the latest backup of `environment` / of every configured one."""
    settings = load_settings(settings_block)
    store = open_store(settings)
    percent = catalog.sample_percent(settings, sample_percent)
    named = [] if backup_id else _environments(settings, [environment] if environment else None)
    manifests = catalog.backups_to_validate(
        store, composer.NAME, backup_id, [s.rsplit("/", 1)[-1] for s in named]
    )
    rows = [summary_row(validate_backup(settings, m, percent)) for m in manifests]
    create_table_artifact(rows, key="composer-validation", description="Cloud Composer validation")
    return rows


@flow(name="restore-composer", **HOOKS)
def restore_composer(
    environment: str,
    backup_id: str | None = None,
    before: str | None = None,
    target_environment: str | None = None,
    parts: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    delete_extra: bool = False,
    settings_block: str = "default",
    approved: bool = False,
) -> dict[str, Any]:
    """Restore an environment's DAGs, metadata, config diff or snapshot from a backup.

    Args:
        environment: the backed-up environment (short or full name).
        backup_id: the backup to restore; default the latest validated one (before `before`).
        before: ISO time; take the latest validated backup started at or before it.
        target_environment: restore into this environment instead (its bucket and Airflow).
        parts: any of "dags", "metadata", "config" (a diff, no write), "snapshot" (load it);
            default dags, metadata and config.
        overwrite: replace DAG / plugin / data files whose content differs (never without it).
        dry_run: only report what would change.
        delete_extra: also delete variables, connections and pools that are not in the backup.
        settings_block: name of the Backstop settings block.
        approved: approve overwriting the original up front; without it such a restore pauses for
            approval in the Prefect UI (default deny).
    """
    approve_overwrite(
        f"restore of Composer environment {environment}",
        overwrite,
        dry_run,
        target_environment in (None, "", environment),
        approved,
    )
    settings = load_settings(settings_block)
    store = open_store(settings)
    source = environment_name(composer.composer_settings(settings), environment).rsplit("/", 1)[-1]
    wanted = set(composer.check_parts(parts, allow_snapshot=True)) if parts else set()
    manifest = catalog.resolve_backup(
        store,
        composer.NAME,
        source,
        backup_id=backup_id,
        before=parse_time(before) if before else None,
        # DAGs are backed up daily and metadata hourly: take the latest backup holding what was asked.
        where=lambda m: (
            wanted <= set(m.source_state.get("parts", [])) | ({"snapshot"} if "snapshot" in wanted else set())
        ),
    )
    report = restore_task(settings, manifest, target_environment, parts, overwrite, dry_run, delete_extra)
    get_run_logger().info(
        "restore of %s to %s: %d created, %d updated/overwritten, %d unchanged, %d conflicts%s",
        manifest.backup_id,
        report["target"],
        report["created"],
        report["overwritten"],
        report["unchanged"],
        report["conflicts"],
        " (dry run)" if dry_run else "",
    )
    create_table_artifact(
        [{k: v for k, v in report.items() if k != "actions"}],
        key="composer-restore",
        description="Cloud Composer restore",
    )
    if report["actions"]:
        create_table_artifact(
            report["actions"][:MAX_ACTION_ROWS],
            key="composer-restore-actions",
            description="What the restore did (or would do), config differences included",
        )
    return report


@task(name="restore-composer-environment", cache_policy=NO_CACHE)
def restore_task(
    settings: BackstopSettings,
    manifest: BackupManifest,
    target: str | None,
    parts: list[str] | None,
    overwrite: bool,
    dry_run: bool,
    delete_extra: bool,
) -> dict[str, Any]:
    report = composer.COMPONENT.restore(
        settings, open_store(settings), manifest, target, parts, overwrite, dry_run, delete_extra=delete_extra
    )
    return report.summary() | {"actions": report.actions}
