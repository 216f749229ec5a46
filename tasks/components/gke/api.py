"""Backup for GKE calls shared by the GKE component's backup and restore: settings, long-running
operations, backup plans, and the state of a backup. component.py and restore.py sit on top of it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import BackstopError, ConfigError
from backstop.core.retention import RetentionPolicy
from blocks.clients import gke_backup_client
from blocks.settings import BackstopSettings
from tasks.components.gke.plans import (
    GkeClusterSettings,
    GkeSettings,
    cluster_path,
    describe_changes,
    desired_plan,
    plan_diff,
    update_mask,
)
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors

NAME = "gke"
DESCRIPTION = "gke-backup.json"
Log = Callable[[str], None]
logger = logging.getLogger("backstop.gke")


def gke_settings(settings: BackstopSettings, gke: GkeSettings | None = None) -> GkeSettings:
    """The GKE settings: `gke` if given, else `settings.gke`; ConfigError when neither exists."""
    found = gke or getattr(settings, "gke", None)
    if found is None:
        raise ConfigError("settings have no 'gke' section: add gke.clusters to the Backstop settings block")
    return GkeSettings.model_validate(found) if not isinstance(found, GkeSettings) else found


def gke_types() -> Any:
    from google.cloud.gke_backup_v1 import types

    return types


def location_path(settings: BackstopSettings, gke: GkeSettings) -> str:
    return f"projects/{gke.project or settings.project}/locations/{gke.location}"


def follow(operation: Any, what: str, gke: GkeSettings, log: Log) -> Any:
    """Poll a long-running operation, logging when its status changes (and at least once a minute).

    A failed operation raises BackstopError with the message Backup for GKE gave.
    """
    deadline = time.monotonic() + gke.operation_timeout_minutes * 60
    started, polls, last_status, last_line = time.monotonic(), 0, None, 0.0
    with converted_errors(what):
        while not operation.done(retry=RETRY):
            polls += 1
            status = getattr(operation.metadata, "status_message", "") if operation.metadata else ""
            if status != last_status or time.monotonic() - last_line >= 60:
                log(f"{what}: running for {time.monotonic() - started:.1f} s {status}".rstrip())
                last_status, last_line = status, time.monotonic()
            if time.monotonic() > deadline:
                raise BackstopError(f"{what}: still running after {gke.operation_timeout_minutes:g} minutes")
            time.sleep(gke.poll_seconds)
        try:
            result = operation.result(timeout=TIMEOUT)
        except gexc.GoogleAPICallError as exc:
            raise BackstopError(f"{what} failed: {exc.message}") from exc
    log(f"{what}: done after {time.monotonic() - started:.1f} s ({polls} polls)")
    return result


# -- plans ------------------------------------------------------------------------------------
def plan_fields(plan: Any) -> dict[str, Any]:
    """A backup plan as the flat dict `desired_plan` produces."""
    config, retention = plan.backup_config, plan.retention_policy
    return {
        "cluster": plan.cluster,
        "backup_config.all_namespaces": bool(config.all_namespaces),
        "backup_config.selected_namespaces": sorted(config.selected_namespaces.namespaces),
        "backup_config.selected_applications": sorted(
            f"{a.namespace}/{a.name}" for a in config.selected_applications.namespaced_names
        ),
        "backup_config.include_volume_data": bool(config.include_volume_data),
        "backup_config.include_secrets": bool(config.include_secrets),
        "backup_config.encryption_key": config.encryption_key.gcp_kms_encryption_key,
        "retention_policy.backup_retain_days": int(retention.backup_retain_days),
        "retention_policy.backup_delete_lock_days": int(retention.backup_delete_lock_days),
    }


def build_plan(name: str, fields: dict[str, Any]) -> Any:
    t = gke_types()
    config = t.BackupPlan.BackupConfig(
        include_volume_data=fields["backup_config.include_volume_data"],
        include_secrets=fields["backup_config.include_secrets"],
        encryption_key=t.EncryptionKey(gcp_kms_encryption_key=fields["backup_config.encryption_key"]),
    )
    if fields["backup_config.selected_namespaces"]:
        config.selected_namespaces = t.Namespaces(namespaces=fields["backup_config.selected_namespaces"])
    elif fields["backup_config.selected_applications"]:
        names = [
            t.NamespacedName(namespace=a.split("/")[0], name=a.split("/")[1])
            for a in fields["backup_config.selected_applications"]
        ]
        config.selected_applications = t.NamespacedNames(namespaced_names=names)
    else:
        config.all_namespaces = True
    retention = t.BackupPlan.RetentionPolicy(
        backup_retain_days=fields["retention_policy.backup_retain_days"],
        backup_delete_lock_days=fields["retention_policy.backup_delete_lock_days"],
    )
    return t.BackupPlan(
        name=name,
        cluster=fields["cluster"],
        backup_config=config,
        retention_policy=retention,
        labels={"managed-by": "backstop"},
        description="Managed by Backstop: edits are reverted on the next run.",
    )


MAX_RETAIN_DAYS = 990  # the longest Backup for GKE keeps a backup (backup_retain_days)


def required_retain_days(settings: BackstopSettings, item: GkeClusterSettings) -> int:
    """The longest Backstop's retention of `gke/<cluster>` keeps a backup (0: no time bound).

    Past MAX_RETAIN_DAYS, 0: Backup for GKE then never deletes on its own and prune deletes each
    backup with its manifest (GkeComponent.delete)."""
    policy = RetentionPolicy.from_settings(settings.retention_for(NAME, item.short_name))
    days = policy.kept_for_days()
    return 0 if days > MAX_RETAIN_DAYS else days


def plan_retain_days(settings: BackstopSettings, item: GkeClusterSettings) -> int:
    """The retain_days Backstop gives the cluster's plan: the settings' value, else the required one."""
    return item.retain_days if item.retain_days is not None else required_retain_days(settings, item)


def retention_gap(retain_days: int, required: int) -> bool:
    """Whether a plan deleting after `retain_days` (0: never) deletes backups Backstop still keeps."""
    return retain_days != 0 and (required == 0 or retain_days < required)


def ensure_plan(
    settings: BackstopSettings,
    gke: GkeSettings,
    item: GkeClusterSettings,
    client: Any | None = None,
    log: Log = logger.info,
) -> dict[str, Any]:
    """Create the cluster's backup plan, or update the fields that differ from the settings.

    Returns {"plan": name, "action": "created" | "updated" | "unchanged", "changes": [lines]}.
    """
    client = client or gke_backup_client()
    parent = location_path(settings, gke)
    name = f"{parent}/backupPlans/{item.plan_id}"
    item = item.model_copy(update={"retain_days": plan_retain_days(settings, item)})
    desired = desired_plan(item, cluster_path(gke.project or settings.project, gke.location, item.cluster))
    with converted_errors(f"Backup for GKE plan {name}"):
        try:
            current = client.get_backup_plan(name=name, timeout=TIMEOUT, retry=RETRY)
        except gexc.NotFound:
            current = None
        if current is None:
            op = client.create_backup_plan(
                parent=parent,
                backup_plan=build_plan("", desired),
                backup_plan_id=item.plan_id,
                timeout=TIMEOUT,
            )
            follow(op, f"creating backup plan {item.plan_id}", gke, log)
            log(f"backup plan {name} created for {desired['cluster']}")
            return {"plan": name, "action": "created", "changes": []}
        changes = plan_diff(plan_fields(current), desired)
        if not changes:
            return {"plan": name, "action": "unchanged", "changes": []}
        from google.protobuf import field_mask_pb2

        mask = field_mask_pb2.FieldMask(paths=update_mask(changes))
        op = client.update_backup_plan(
            backup_plan=build_plan(name, desired), update_mask=mask, timeout=TIMEOUT
        )
        follow(op, f"updating backup plan {item.plan_id}", gke, log)
    lines = describe_changes(changes)
    log(f"backup plan {name} updated: {'; '.join(lines)}")
    return {"plan": name, "action": "updated", "changes": lines}


# -- backups ----------------------------------------------------------------------------------
def backup_state(backup: Any) -> dict[str, Any]:
    """What the manifest records about a Backup for GKE backup."""
    return {
        "backup_name": backup.name,
        "backup_plan": backup.name.split("/backups/")[0],
        "cluster": backup.cluster_metadata.cluster,
        "state": backup.state.name,
        "state_reason": backup.state_reason,
        "resource_count": int(backup.resource_count),
        "volume_count": int(backup.volume_count),
        "pod_count": int(backup.pod_count),
        "size_bytes": int(backup.size_bytes),
        "config_backup_size_bytes": int(backup.config_backup_size_bytes),
        "contains_volume_data": bool(backup.contains_volume_data),
        "contains_secrets": bool(backup.contains_secrets),
        "namespaces": sorted(backup.selected_namespaces.namespaces) if not backup.all_namespaces else [],
        "all_namespaces": bool(backup.all_namespaces),
        "create_time": backup.create_time.isoformat() if backup.create_time else None,
        "complete_time": backup.complete_time.isoformat() if backup.complete_time else None,
        "retain_days": int(backup.retain_days),
        "delete_lock_days": int(backup.delete_lock_days),
        "encryption_key": backup.encryption_key.gcp_kms_encryption_key or None,
    }
