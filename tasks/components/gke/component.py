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
It also records a content digest per namespace, read through the cluster's Kubernetes API, so a
restore replaces only namespaces that differ and `exact` deletes the ones added (compare.py).

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
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import BackstopError, Conflict, NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry
from blocks.clients import gke_backup_client
from blocks.settings import BackstopSettings
from tasks.catalog import points
from tasks.components.gke.api import (
    DESCRIPTION,
    NAME,
    backup_state,
    ensure_plan,
    follow,
    gke_settings,
    gke_types,
    logger,
)
from tasks.components.gke.compare import backup_digests, differences, plan_actions, read_digests
from tasks.components.gke.namespaces import delete_namespaces
from tasks.components.gke.options import NOUN, PART, GkeOptions
from tasks.components.gke.plans import (
    GkeSettings,
    check_cluster,
    cluster_path,
    count_problems,
    namespace_volume_problems,
    namespace_volumes,
    parse_target,
)
from tasks.components.gke.restore import remove_target, restore_backup, verify_restored
from tasks.engine.protocol import BackupPlan as LifecyclePlan
from tasks.engine.protocol import (
    Context,
    LifecycleMethods,
    RestorePlan,
    RestoreReport,
    RestoreRequest,
)
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors, crc32c_b64


class GkeComponent(LifecycleMethods):
    """GKE clusters through Backup for GKE: source = cluster short name; one unit = one backup."""

    name = NAME
    noun, part = NOUN, PART
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
        item = gke.cluster(manifest.source)
        cluster = cluster_path(gke.project or ctx.settings.project, gke.location, item.cluster)
        before = read_digests(cluster, item, log)  # the namespaces' contents, compared by restores
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
        if state["state"] == "SUCCEEDED":
            state |= backup_digests(before, read_digests(cluster, item, log) if before is not None else None)
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

    def gone_outside(self, ctx: Context, manifest: BackupManifest) -> list[str]:
        """The Backup for GKE backup, when Backup for GKE no longer has it (deleted after the plan's
        retain_days, or by hand) or is deleting it."""
        name = manifest.source_state.get("backup_name", "")
        try:
            with converted_errors(f"Backup for GKE backup {name}"):
                live = gke_backup_client().get_backup(name=name, timeout=TIMEOUT, retry=RETRY)
        except NotFound:
            return [f"Backup for GKE backup {name} no longer exists"]
        if live.state.name == "DELETING":
            return [f"Backup for GKE is deleting backup {name}"]
        return []

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
        prev = points.previous_backup(
            ctx.store, NAME, manifest.source, before=manifest, validated_only=True, on_damaged=logger.warning
        )
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
        self,
        ctx: Context,
        manifest: BackupManifest,
        request: RestoreRequest,
        dry_run: bool,
        keep: list[str] | None = None,
    ) -> RestoreReport:
        options = ctx.options
        return restore_backup(
            ctx.settings, ctx.store, manifest, request.target, request.only, request.overwrite, dry_run,
            rename=options.rename, gke=options.gke_config, log=ctx.info, resources=options.resources,
            keep=keep,
        )  # fmt: skip

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        """Each namespace compared with the target through its Kubernetes API (compare.py): "create",
        "unchanged" or "replace" (Backup for GKE deletes and restores it, with overwrite); with
        `exact` into a whole cluster, "delete" for the namespaces added after the backup."""
        report = self._restore(ctx, manifest, request, dry_run=True)
        gke = gke_settings(ctx.settings, ctx.options.gke_config)
        cluster_name, suffix = parse_target(request.target or manifest.source)
        cluster = cluster_path(gke.project or ctx.settings.project, gke.location, cluster_name)
        whole = not suffix and not ctx.options.rename
        actions, keep = plan_actions(
            manifest, request, report.actions, cluster, whole, bool(ctx.options.resources)
        )
        into_original = whole and cluster_name.rsplit("/", 1)[-1] == manifest.source
        return RestorePlan(
            target=report.target,
            into_original=into_original,
            actions=actions,
            private={"keep": keep, "cluster": cluster},
        )

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        """Restore what the plan creates or replaces through Backup for GKE (nothing when every
        namespace is unchanged), then delete the namespaces it deletes (exact, with overwrite)."""
        keep = plan.private["keep"]
        if keep != []:
            report = self._restore(ctx, manifest, request, dry_run=False, keep=keep)
            plan.done = {"create": report.created}  # resources the service restored
            plan.actions += [  # what the service reports of the restore itself
                {"name": a.get("restore"), "change": "note", **a}
                for a in report.actions
                if "namespace" not in a and "resource" not in a
            ]
        deletes = [a["name"] for a in plan.actions if a["change"] == "delete"]
        if deletes and request.overwrite:
            delete_namespaces(plan.private["cluster"], deletes)
            ctx.info(f"deleted namespace(s) {', '.join(deletes)} of {plan.target}: not in the backup")

    def verify_restored(
        self, ctx: Context, manifest: BackupManifest, target: str, only: list[str] | None
    ) -> list[str]:
        """The restored namespaces of `target` hold what the backup's digests say (compare.py); where
        they cannot be compared or still differ (fields a cluster assigns that digests do not drop),
        the latest restore of this backup into `target` succeeded with every resource and volume."""
        gke = gke_settings(ctx.settings, ctx.options.gke_config)
        if differences(ctx.settings, gke, manifest, target, only, ctx.options) == []:
            return []
        return verify_restored(ctx.settings, ctx.store, manifest, target, gke=gke)

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
        remove_target(settings, target, gke)


COMPONENT = GkeComponent()
