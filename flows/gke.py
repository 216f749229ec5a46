"""GKE flows through Backup for GKE: backup (plan, backup, follow), validate, restore.

One task per cluster step: ensure the plan, take the backup, validate it. The Backup for GKE
operations are followed inside the tasks with a log line per poll.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from backstop.manifest import BackupManifest
from backstop.names import parse_time
from backstop.report import human_bytes
from blocks.settings import BackstopSettings, load_settings
from flows.approval import approve_overwrite
from flows.hooks import HOOKS
from tasks import catalog, gke
from tasks.context import open_store
from tasks.gke_plans import GkeSettings, check_cluster, check_namespace, parse_renames, parse_resources


def _settings(
    settings_block: str, gke_config: GkeSettings | dict[str, Any] | None
) -> tuple[BackstopSettings, GkeSettings]:
    settings = load_settings(settings_block)
    config = GkeSettings.model_validate(gke_config) if isinstance(gke_config, dict) else gke_config
    return settings, gke.gke_settings(settings, config)


def _info(message: str) -> None:
    get_run_logger().info("%s", message)


@task(name="ensure-gke-backup-plan", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def ensure_plan(settings: BackstopSettings, config: GkeSettings, cluster: str) -> dict[str, Any]:
    """Create or update the cluster's backup plan from the settings (idempotent)."""
    return gke.ensure_plan(settings, config, config.cluster(cluster), log=_info)


@task(name="backup-gke-cluster", cache_policy=NO_CACHE)
def backup_cluster(settings: BackstopSettings, config: GkeSettings, cluster: str) -> BackupManifest:
    """Take one Backup for GKE backup, follow it, commit the manifest."""
    return gke.COMPONENT.backup(settings, open_store(settings), cluster, gke=config, log=_info)


@task(name="validate-gke-backup", cache_policy=NO_CACHE)
def validate_backup(
    settings: BackstopSettings, config: GkeSettings, manifest: BackupManifest
) -> BackupManifest:
    return gke.COMPONENT.validate(settings, open_store(settings), manifest, gke=config)


def summary_row(manifest: BackupManifest, plan_action: str = "") -> dict[str, Any]:
    state = manifest.source_state
    return {
        "cluster": manifest.source,
        "backup_id": manifest.backup_id,
        "state": state.get("state"),
        "resources": state.get("resource_count"),
        "volumes": state.get("volume_count"),
        "pods": state.get("pod_count"),
        "size": human_bytes(state.get("size_bytes") or 0),
        "plan": plan_action or manifest.options.get("plan_action", ""),
        "seconds": round(manifest.duration_seconds or 0, 2),
        "status": manifest.status,
    }


@flow(name="backup-gke", **HOOKS)
def backup_gke(
    clusters: list[str] | None = None,
    validate_after: bool = True,
    settings_block: str = "default",
    gke_config: GkeSettings | None = None,
) -> list[dict[str, Any]]:
    """Back up GKE clusters through Backup for GKE, then validate each backup.

    Args:
        clusters: cluster short names; default every cluster in settings.gke.clusters.
        validate_after: validate each backup (a FAILED backup or a sharp count drop fails the run).
        settings_block: name of the Backstop settings block.
        gke_config: GKE settings to use instead of the block's `gke` section.
    """
    settings, config = _settings(settings_block, gke_config)
    chosen = [check_cluster(c) for c in clusters] if clusters else [c.short_name for c in config.clusters]
    progress = cast(
        UUID, create_progress_artifact(0.0, key="gke-backup-progress", description="Backup for GKE backups")
    )
    rows, failures = [], []
    for done, cluster in enumerate(chosen, 1):
        plan = ensure_plan(settings, config, cluster)
        if plan["changes"]:
            get_run_logger().info("%s: backup plan updated: %s", cluster, "; ".join(plan["changes"]))
        manifest = backup_cluster(settings, config, cluster)
        if validate_after:
            state = validate_backup(settings, config, manifest, return_state=True)
            if state.is_failed():
                failures.append(state)
            else:
                manifest = state.result()
        rows.append(summary_row(manifest, plan["action"]))
        update_progress_artifact(progress, 100.0 * done / len(chosen))
    create_table_artifact(rows, key="gke-backup-summary", description="Backup for GKE backups")
    for failed in failures:
        failed.result()  # re-raise the first validation failure, after every cluster was tried
    return rows


@flow(name="validate-gke", **HOOKS)
def validate_gke(
    backup_id: str | None = None,
    cluster: str | None = None,
    settings_block: str = "default",
    gke_config: GkeSettings | None = None,
) -> list[dict[str, Any]]:
    """Validate one backup (by id), or the latest backup of `cluster` / of every configured cluster."""
    settings, config = _settings(settings_block, gke_config)
    store = open_store(settings)
    sources = [check_cluster(cluster)] if cluster else [c.short_name for c in config.clusters]
    manifests = catalog.backups_to_validate(store, gke.NAME, backup_id, sources)
    rows = [summary_row(validate_backup(settings, config, m)) for m in manifests]
    create_table_artifact(rows, key="gke-validation", description="Backup for GKE validation")
    return rows


@flow(name="restore-gke", **HOOKS)
def restore_gke(
    cluster: str,
    backup_id: str | None = None,
    before: str | None = None,
    target_cluster: str | None = None,
    namespaces: list[str] | None = None,
    rename: dict[str, str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    settings_block: str = "default",
    gke_config: GkeSettings | None = None,
    resources: list[str] | None = None,
    approved: bool = False,
) -> dict[str, Any]:
    """Restore a cluster's backup (whole, chosen namespaces or chosen resources) into it or another cluster.

    Args:
        cluster: the backed-up cluster (short name).
        backup_id: the backup to restore; default the latest validated one (before `before`).
        before: ISO time; take the latest validated backup started at or before it.
        target_cluster: where to restore ('cluster' or 'cluster:suffix' for scratch namespaces).
        namespaces: restore only these namespaces.
        rename: {old: new} namespace renames (transformation rules).
        overwrite: replace existing resources (DELETE_AND_RESTORE); without it a conflict fails the restore.
        dry_run: only report what would be restored, and as which namespace.
        settings_block: name of the Backstop settings block.
        gke_config: GKE settings to use instead of the block's `gke` section.
        resources: restore only these objects: 'namespace/Kind/name' or 'Kind/name' (any namespace
            or cluster-scoped); 'Kind.group' names a kind outside the common API groups.
        approved: approve overwriting the original up front; without it such a restore pauses for
            approval in the Prefect UI (default deny).
    """
    approve_overwrite(
        f"restore of cluster {cluster}", overwrite, dry_run, target_cluster in (None, "", cluster), approved
    )
    settings, config = _settings(settings_block, gke_config)
    check_cluster(cluster)
    for namespace in namespaces or []:
        check_namespace(namespace)
    renames = parse_renames(rename)
    parse_resources(resources)
    store = open_store(settings)
    manifest = catalog.resolve_backup(
        store, gke.NAME, cluster, backup_id=backup_id, before=parse_time(before) if before else None
    )
    report = gke.COMPONENT.restore(
        settings,
        store,
        manifest,
        target_cluster,
        namespaces,
        overwrite,
        dry_run,
        rename=renames,
        gke=config,
        log=_info,
        resources=resources,
    )
    get_run_logger().info(
        "restore of %s into %s: %d resources restored%s",
        manifest.backup_id,
        report.target,
        report.created,
        " (dry run)" if dry_run else "",
    )
    create_table_artifact(
        [a for a in report.actions if "namespace" in a or "resource" in a] or [report.summary()],
        key="gke-restore",
        description=f"Backup for GKE restore of {manifest.backup_id}",
    )
    return report.summary() | {"actions": report.actions}
