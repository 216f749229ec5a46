"""GKE workloads through Backup for GKE: plans, backups, validation, restores.

What Backup for GKE covers, and what a plain Kubernetes export would not
------------------------------------------------------------------------
Backstop protects GKE clusters with Backup for GKE: one backup plan per cluster (all namespaces,
chosen namespaces or chosen ProtectedApplications; volume data; Secrets; CMEK; retention and
delete-lock days), a backup per scheduled run (03:00 UTC by default), validation (state SUCCEEDED,
every volume backup SUCCEEDED, resource / volume / pod counts and size not dropping more than
`gke.drop_threshold_percent` against the previous good backup, no namespace whose volumes were
backed up before missing now) and restores (whole backup, chosen namespaces or chosen resources
through a restore filter, into the same or another cluster, namespaces renamed through transformation rules,
conflicts failing the restore unless overwrite is asked for). The backup data stays in Backup for
GKE; the Backstop manifest records its name, state, counts, size and times, plus a small JSON
description in the backup bucket so the catalog, retention and drills treat it like any backup.

A plain export of Kubernetes objects to YAML (the `kubernetes` client, for clusters without
Backup for GKE) is NOT built. It would cover the declared objects (Deployments, Services,
ConfigMaps, CRDs and custom resources, RBAC; Secrets only if you accept them in the backup
bucket) and nothing else: no persistent volume data (no disk snapshots), no consistent
point-in-time across namespaces, no status or runtime-generated fields, no cluster-level settings
(node pools, networking, IAM, Workload Identity bindings) and no ordering of restores around CRDs
and webhooks. Use Backup for GKE (or volume snapshots) for anything holding data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from backstop.core.errors import BackstopError, ConfigError, Conflict, NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry, select
from blocks.clients import gke_backup_client
from blocks.settings import BackstopSettings
from tasks.catalog import index
from tasks.components.gke.plans import (
    GkeClusterSettings,
    GkeSettings,
    check_cluster,
    cluster_path,
    count_problems,
    describe_changes,
    desired_plan,
    namespace_volume_problems,
    namespace_volumes,
    parse_renames,
    parse_resources,
    parse_target,
    plan_diff,
    update_mask,
)
from tasks.engine.protocol import BackupPlan as LifecyclePlan
from tasks.engine.protocol import Context, LifecycleMethods, RestorePlan, RestoreReport, RestoreRequest
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors, crc32c_b64

NAME = "gke"
DESCRIPTION = "gke-backup.json"
Log = Callable[[str], None]
logger = logging.getLogger("backstop.gke")

__all__ = ["COMPONENT", "GkeClusterSettings", "GkeComponent", "GkeSettings"]


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


def previous_good(store: BackupStore, source: str, before: BackupManifest) -> BackupManifest | None:
    found = [
        h
        for h in select(
            index.read_headers(store, NAME, source, on_damaged=logger.warning),
            NAME,
            source,
            validated_only=True,
        )
        if h.backup_id != before.backup_id and h.started_at <= before.started_at
    ]
    return index.first_loadable(store, found, on_damaged=logger.warning, validated_only=True)


class GkeOptions(BaseModel):
    """Options of GKE backups and restores."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    gke_config: GkeSettings | None = Field(
        default=None,
        description="GKE settings instead of the block's `gke`.",
        validation_alias=AliasChoices("gke_config", "gke"),
    )
    rename: dict[str, str] | None = Field(
        default=None, description="Namespace renames old=new.", json_schema_extra={"verbs": ["restore"]}
    )
    resources: list[str] | None = Field(
        default=None,
        description="Restore only these objects: 'namespace/Kind/name' or 'Kind/name'.",
        json_schema_extra={"flag": "resource", "verbs": ["restore"]},
    )

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: list[str] | None) -> list[str] | None:
        parse_resources(value)  # raises InvalidInput naming the malformed one
        return value

    @field_validator("rename", mode="before")
    @classmethod
    def _rename(cls, value: Any) -> dict[str, str] | None:
        return parse_renames(value) if value else None


class GkeComponent(LifecycleMethods):
    """GKE clusters through Backup for GKE: source = cluster short name; one unit = one backup."""

    name = NAME
    noun = "cluster"
    part = "namespace"
    Options = GkeOptions

    def sources(self, settings: BackstopSettings) -> list[str]:
        found = getattr(settings, "gke", None)
        return [c.short_name for c in gke_settings(settings).clusters] if found else []

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        return check_cluster(source).rsplit("/", 1)[-1]

    def check_target(self, settings: BackstopSettings, target: str) -> str:
        parse_target(target)
        return target

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> LifecyclePlan:
        gke = gke_settings(ctx.settings, ctx.options.gke_config)
        item = gke.cluster(manifest.source)
        plan = ensure_plan(ctx.settings, gke, item, gke_backup_client(), ctx.info)
        state = {"plan": plan["plan"], "plan_action": plan["action"]}
        return LifecyclePlan(
            units=[plan["plan"]], state=state, describe=f"{item.short_name}: backup plan {plan['action']}"
        )

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: str
    ) -> tuple[list[ManifestEntry], dict[str, Any]]:
        """Take one Backup for GKE backup under plan `unit`, follow it, describe it in the store."""
        gke = gke_settings(ctx.settings, ctx.options.gke_config)
        client, log = gke_backup_client(), ctx.info
        backup_id = f"bs-{manifest.backup_id.lower()}"
        with converted_errors(f"Backup for GKE backup of {manifest.source} ({unit})"):
            op = client.create_backup(
                parent=unit,
                backup=gke_types().Backup(labels={"backstop-backup-id": backup_id}),
                backup_id=backup_id,
                timeout=TIMEOUT,
            )
            try:
                follow(op, f"backup {backup_id} of {manifest.source}", gke, log)
            except BackstopError as exc:  # a FAILED backup is recorded; validation names the reason
                log(str(exc))
            backup = client.get_backup(name=f"{unit}/backups/{backup_id}", timeout=TIMEOUT, retry=RETRY)
        state = backup_state(backup)
        if state["state"] == "SUCCEEDED" and state["contains_volume_data"]:
            with converted_errors(f"listing volume backups of {backup.name}"):
                listed = client.list_volume_backups(parent=backup.name, timeout=TIMEOUT, retry=RETRY)
                state["namespace_volumes"] = namespace_volumes(listed)
        log(
            f"backup {backup.name}: {state['state']} {state['resource_count']} resources, "
            f"{state['volume_count']} volumes, {state['pod_count']} pods, {state['size_bytes']} bytes"
        )
        body = json.dumps(state, indent=1, sort_keys=True).encode()
        key = manifest.folder + DESCRIPTION
        ctx.store.put_bytes(key, body, content_type="application/json")
        entry = ManifestEntry(
            name=backup.name,
            stored_key=key,
            size=len(body),
            crc32c=crc32c_b64(body),
            metadata={"kind": "backup-for-gke"},
        )
        return [entry], state

    def check(
        self, ctx: Context, manifest: BackupManifest, sample_percent: float, damaged: set[str]
    ) -> list[str]:
        """State SUCCEEDED, volume backups complete, counts present and not dropping sharply."""
        gke = gke_settings(ctx.settings, ctx.options.gke_config)
        problems: list[str] = []
        recorded = manifest.source_state
        name = recorded.get("backup_name", "")
        client = gke_backup_client()
        live: dict[str, Any] = dict(recorded)
        try:
            with converted_errors(f"Backup for GKE backup {name}"):
                live = backup_state(client.get_backup(name=name, timeout=TIMEOUT, retry=RETRY))
                volumes = list(client.list_volume_backups(parent=name, timeout=TIMEOUT, retry=RETRY))
        except NotFound:
            problems.append(f"backup {name} no longer exists in Backup for GKE")
            volumes = []
        if live["state"] != "SUCCEEDED":
            problems.append(
                f"Backup for GKE reports {name} {live['state']}: {live.get('state_reason') or 'no reason given'}"
            )
            return problems
        prev = previous_good(ctx.store, manifest.source, manifest)
        before = prev.source_state | {"backup_id": prev.backup_id} if prev else None
        problems += count_problems(live, before, gke.drop_threshold_percent, live["contains_volume_data"])
        if prev and live["contains_volume_data"]:
            problems += namespace_volume_problems(
                namespace_volumes(volumes),
                prev.source_state.get("namespace_volumes"),
                prev.backup_id,
                live["namespaces"],
            )
        bad = [v.name.rsplit("/", 1)[-1] + f" {v.state.name}" for v in volumes if v.state.name != "SUCCEEDED"]
        if bad:
            problems.append(f"volume backups not complete: {', '.join(bad[:5])}")
        if live["contains_volume_data"] and len(volumes) != live["volume_count"]:
            problems.append(f"{len(volumes)} volume backups listed, the backup counts {live['volume_count']}")
        return problems

    def _restore(
        self, ctx: Context, manifest: BackupManifest, request: RestoreRequest, dry_run: bool
    ) -> RestoreReport:
        from tasks.components.gke.restore import restore_backup

        options = ctx.options
        return restore_backup(
            ctx.settings, ctx.store, manifest, request.target, request.only, request.overwrite, dry_run,
            rename=options.rename, gke=options.gke_config, log=ctx.info, resources=options.resources,
        )  # fmt: skip

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        """Backup for GKE restores whole namespaces or chosen resources. Without overwrite its conflict
        policy fails on anything that exists (nothing replaced); with overwrite it deletes and restores."""
        report = self._restore(ctx, manifest, request, dry_run=True)
        change = "replace" if request.overwrite else "create"
        actions = [
            {"name": a.get("resource") or a.get("namespace"), "change": change, **a} for a in report.actions
        ]
        cluster, suffix = parse_target(request.target or manifest.source)
        into_original = (
            cluster.rsplit("/", 1)[-1] == manifest.source and not suffix and not ctx.options.rename
        )
        return RestorePlan(target=report.target, into_original=into_original, actions=actions)

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        report = self._restore(ctx, manifest, request, dry_run=False)
        plan.done = {"create": report.created}  # resources the service restored
        plan.actions += [  # what the service reports of the restore itself
            {"name": a.get("restore"), "change": "note", **a}
            for a in report.actions
            if "namespace" not in a and "resource" not in a
        ]

    def verify_restored(
        self, ctx: Context, manifest: BackupManifest, target: str, only: list[str] | None
    ) -> list[str]:
        """The latest restore of this backup into `target` succeeded with every resource and volume."""
        from tasks.components.gke.restore import verify_restored

        return verify_restored(ctx.settings, ctx.store, manifest, target, gke=ctx.options.gke_config)

    def delete(
        self, settings: BackstopSettings, manifest: BackupManifest, gke: GkeSettings | None = None
    ) -> None:
        """Delete the Backup for GKE backup of `manifest` (retention calls this before deleting the manifest).

        A backup already gone counts as deleted; a delete-locked one raises with Backup for GKE's reason.
        """
        gke = gke_settings(settings, gke)
        name = manifest.source_state.get("backup_name")
        if not name:
            return
        try:
            with converted_errors(f"deleting Backup for GKE backup {name}"):
                try:
                    op = gke_backup_client().delete_backup(
                        request={"name": name, "force": True}, timeout=TIMEOUT
                    )
                except gexc.FailedPrecondition as exc:  # e.g. still inside its delete-lock days
                    raise Conflict(f"Backup for GKE backup {name} cannot be deleted: {exc.message}") from exc
                follow(op, f"deleting backup {name.rsplit('/', 1)[-1]}", gke, logger.info)
        except NotFound:
            return

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        """Same cluster, every namespace restored as '<namespace>-drill-<suffix>'."""
        return f"{manifest.source}:drill-{suffix}".lower()

    def remove_target(self, settings: BackstopSettings, target: str, gke: GkeSettings | None = None) -> None:
        """Delete the restore plans (and their restores) Backstop made for `target`."""
        from tasks.components.gke.restore import remove_target

        remove_target(settings, target, gke)


COMPONENT = GkeComponent()
