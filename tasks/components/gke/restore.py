"""Restores of GKE backups through Backup for GKE: restore plans, restores, drills' scratch targets.

A restore plan holds the restore configuration (namespaces, renames as transformation rules, the
conflict policy) for one backup plan and target cluster; Backstop names it by a hash of that
configuration, so repeating a restore reuses its plan. Each restore is one Restore under it,
followed to the end; its counts are what the report says was restored.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound, ValidationFailed
from backstop.core.manifest import BackupManifest
from blocks.clients import gke_backup_client
from blocks.settings import BackstopSettings
from tasks.components.gke.api import NAME, Log, follow, gke_settings, gke_types, location_path, logger
from tasks.components.gke.digests import is_system
from tasks.components.gke.namespaces import delete_namespaces, scratch_namespaces
from tasks.components.gke.plans import (
    GkeSettings,
    check_namespace,
    cluster_path,
    parse_renames,
    parse_resources,
    parse_target,
    restore_plan_id,
    suffixed,
)
from tasks.engine.protocol import RestoreReport
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors


@dataclass
class Scope:
    """What one restore covers: the target cluster, namespaces, renames, the restore config."""

    cluster: str
    cluster_name: str
    chosen: list[str]
    renames: dict[str, str]
    selectors: list[dict[str, str]]
    config: Any


def restore_scope(
    settings: BackstopSettings,
    gke: GkeSettings,
    manifest: BackupManifest,
    target: str | None,
    only: list[str] | None,
    overwrite: bool,
    rename: dict[str, str] | list[str] | None,
    resources: list[str] | None,
    keep: list[str] | None = None,
) -> Scope:
    """The namespaces (and resources) a restore of `manifest` into `target` covers, checked
    against the backup (NotFound names a namespace it does not hold).

    `keep` (None: all) narrows it to the backed-up namespaces that need restoring (a plan found the
    others unchanged): a restore of all namespaces then becomes one of those chosen."""
    state = manifest.source_state
    if state.get("state") != "SUCCEEDED":
        raise ValidationFailed(
            f"backup {manifest.backup_id} of {manifest.source} is {state.get('state')}: not restorable"
        )
    cluster_name, suffix = parse_target(target or manifest.source)
    cluster = cluster_path(gke.project or settings.project, gke.location, cluster_name)
    backed_up = state.get("namespaces") or []
    selectors = parse_resources(resources)
    chosen = [check_namespace(n) for n in only or []]
    if selectors and (chosen or all(s["namespace"] for s in selectors)):
        chosen = sorted(set(chosen) | {s["namespace"] for s in selectors if s["namespace"]})
    # a backup of every namespace records their contents without the system ones: Backup for GKE
    # answers for those
    held = held_namespaces(manifest)
    missing = [n for n in chosen if held and n not in held and (backed_up or not is_system(n))]
    if missing:
        raise NotFound(
            f"namespace(s) {', '.join(missing)} not in backup {manifest.backup_id} ({', '.join(held)})"
        )
    renames = parse_renames(rename)
    if suffix:  # a scratch restore: only named namespaces, each under a new name
        chosen = chosen or backed_up or _drill_namespaces(gke, manifest.source)
        renames = {ns: renames.get(ns, suffixed(ns, suffix)) for ns in chosen}
    if keep is not None:
        everything = sorted(state.get("namespace_digests") or {})
        chosen = (
            [n for n in chosen if n in keep] if chosen else ([] if set(everything) <= set(keep) else keep)
        )
    cluster_kinds = sorted({(s["group"], s["kind"]) for s in selectors if not s["namespace"]})
    config = restore_config(chosen, renames, overwrite, cluster_kinds if selectors else None)
    return Scope(cluster, cluster_name, chosen, renames, selectors, config)


def held_namespaces(manifest: BackupManifest) -> list[str]:
    """The namespaces a backup holds: its plan's chosen ones, else (a plan of every namespace) those
    whose contents it recorded; [] when it recorded neither."""
    state = manifest.source_state
    return state.get("namespaces") or sorted(state.get("namespace_digests") or {})


def restore_backup(
    settings: BackstopSettings,
    store: BackupStore,
    manifest: BackupManifest,
    target: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    rename: dict[str, str] | list[str] | None = None,
    gke: GkeSettings | None = None,
    log: Log = logger.info,
    resources: list[str] | None = None,
    keep: list[str] | None = None,
) -> RestoreReport:
    """Restore the backup (or the namespaces in `only`) to `target` ('cluster' or 'cluster:suffix').

    `resources` ('namespace/Kind/name' or 'Kind/name') restores only those objects: they become
    the restore's inclusion filter, and their namespaces (with `only`) the restore plan's scope.
    `keep` restores only those of the backed-up namespaces (see `restore_scope`); [] calls nothing.
    """
    started = time.monotonic()
    gke = gke_settings(settings, gke)
    scope = restore_scope(settings, gke, manifest, target, only, overwrite, rename, resources, keep)
    report = RestoreReport(
        NAME, manifest.source, manifest.backup_id, target or manifest.source, dry_run=dry_run
    )
    if resources:  # chosen objects merged into their namespaces: a row per object, none per namespace
        report.actions = [{"resource": r, "restore_as": _restored_as(r, scope.renames)} for r in resources]
    else:
        report.actions = [
            {"namespace": ns, "restore_as": scope.renames.get(ns, ns)}
            for ns in (scope.chosen or held_namespaces(manifest) or ["*"])
        ]
    if not dry_run and keep != []:
        restore = run_restore(settings, gke, manifest, scope, target, log)
        check_outcome(restore, manifest, scope.cluster, overwrite)
        report.created = int(restore.resources_restored_count)
        if resources and not report.created:  # the filter matched nothing the backup holds
            raise NotFound(
                f"nothing in backup {manifest.backup_id} matches {', '.join(resources)}: nothing restored"
            )
        report.actions.append(
            {
                "restore": restore.name,
                "resources_restored": report.created,
                "resources_excluded": int(restore.resources_excluded_count),
                "volumes_restored": int(restore.volumes_restored_count),
            }
        )
        log(
            f"restore {restore.name}: {report.created} resources, "
            f"{restore.volumes_restored_count} volumes restored"
        )
    report.seconds = time.monotonic() - started
    return report


def run_restore(
    settings: BackstopSettings,
    gke: GkeSettings,
    manifest: BackupManifest,
    scope: Scope,
    target: str | None,
    log: Log,
) -> Any:
    """Create (or reuse) the restore plan of `scope`, run one Restore under it, follow it to the end
    and return it as Backup for GKE reports it."""
    client, t, state = gke_backup_client(), gke_types(), manifest.source_state
    plan_id = restore_plan_id(
        state["backup_plan"].rsplit("/", 1)[-1], scope.cluster, {"config": repr(scope.config)}
    )
    parent = location_path(settings, gke)
    plan_name = f"{parent}/restorePlans/{plan_id}"
    with converted_errors(f"Backup for GKE restore of {manifest.backup_id} into {scope.cluster}"):
        try:
            client.get_restore_plan(name=plan_name, timeout=TIMEOUT, retry=RETRY)
        except gexc.NotFound:
            plan = t.RestorePlan(
                backup_plan=state["backup_plan"],
                cluster=scope.cluster,
                restore_config=scope.config,
                labels={"managed-by": "backstop", "backstop-target": _label(target or manifest.source)},
            )
            follow(
                client.create_restore_plan(
                    parent=parent, restore_plan=plan, restore_plan_id=plan_id, timeout=TIMEOUT
                ),
                f"creating restore plan {plan_id}",
                gke,
                log,
            )
        restore_id = f"r-{manifest.backup_id.lower()}-{int(time.time() * 1000) % 10**8}"
        op = client.create_restore(
            parent=plan_name,
            restore=t.Restore(backup=state["backup_name"], filter=restore_filter(scope.selectors)),
            restore_id=restore_id,
            timeout=TIMEOUT,
        )
        with contextlib.suppress(BackstopError):  # the restore's own state says why (check_outcome)
            follow(op, f"restore {restore_id} into {scope.cluster_name}", gke, log)
        return client.get_restore(name=f"{plan_name}/restores/{restore_id}", timeout=TIMEOUT, retry=RETRY)


def check_outcome(restore: Any, manifest: BackupManifest, cluster: str, overwrite: bool) -> None:
    """Raise unless the Restore succeeded: Conflict when it found existing resources without overwrite."""
    if restore.state.name == "SUCCEEDED":
        return
    reason = restore.state_reason or "no reason given"
    if not overwrite and "already exist" in reason:
        raise Conflict(
            f"restore of {manifest.backup_id} into {cluster} refused by Backup for GKE: {reason}; "
            "overwrite was not asked for: nothing was replaced (pass overwrite to replace)"
        )
    raise BackstopError(f"restore {restore.name} {restore.state.name}: {reason}")


def verify_restored(
    settings: BackstopSettings,
    store: BackupStore,
    manifest: BackupManifest,
    target: str,
    gke: GkeSettings | None = None,
) -> list[str]:
    """The latest restore of this backup into `target` succeeded with every resource and volume."""
    restores = [
        r
        for r in _target_restores(settings, target, gke)
        if r.backup == manifest.source_state.get("backup_name")
    ]
    if not restores:
        return [f"no restore of {manifest.backup_id} into {target} found in Backup for GKE"]
    last = max(restores, key=lambda r: r.create_time)
    state, problems = manifest.source_state, []
    if last.state.name != "SUCCEEDED":
        problems.append(f"restore {last.name} is {last.state.name}: {last.state_reason}")
    elif int(last.resources_restored_count) + int(last.resources_excluded_count) != state.get(
        "resource_count"
    ):
        problems.append(
            f"restore {last.name} restored {last.resources_restored_count} of {state.get('resource_count')} resources"
        )
    if (
        state.get("contains_volume_data")
        and int(last.volumes_restored_count) < int(state.get("volume_count", 0))
        and not last.resources_excluded_count
    ):
        problems.append(
            f"restore {last.name} restored {last.volumes_restored_count} of {state.get('volume_count')} volumes"
        )
    return problems


def remove_target(settings: BackstopSettings, target: str, gke: GkeSettings | None = None) -> None:
    """Delete what a restore into the scratch `target` ('cluster:suffix') made: the '-<suffix>'
    namespaces (through the Kubernetes API: Backup for GKE cannot), then the restore plans (and
    their restores). Raises naming what could not be removed."""
    gke, client = gke_settings(settings, gke), gke_backup_client()
    cluster_name, suffix = parse_target(target)
    if suffix:
        cluster = cluster_path(gke.project or settings.project, gke.location, cluster_name)
        delete_namespaces(cluster, scratch_namespaces(cluster, suffix))
    for plan in _target_plans(settings, target, gke):
        with converted_errors(f"deleting restore plan {plan.name}"):
            follow(
                client.delete_restore_plan(
                    request={"name": plan.name, "force": True}, timeout=TIMEOUT, retry=RETRY
                ),
                f"deleting restore plan {plan.name.rsplit('/', 1)[-1]}",
                gke,
                logger.info,
            )


def _drill_namespaces(gke: GkeSettings, source: str) -> list[str]:
    item = next((c for c in gke.clusters if source in (c.cluster, c.short_name)), None)
    found = (item.drill_namespaces or item.namespaces) if item else []
    if not found:
        raise InvalidInput(
            f"backup of {source} covers all namespaces: name the namespaces to restore under a suffix "
            f"(--namespace, or gke.clusters[].drill_namespaces)"
        )
    return list(found)


def restore_filter(selectors: list[dict[str, str]]) -> Any:
    """Restore.Filter including only the objects `selectors` (from parse_resources) name; None: all."""
    if not selectors:
        return None
    t = gke_types()
    return t.Restore.Filter(
        inclusion_filters=[
            t.ResourceSelector(
                group_kind=t.RestoreConfig.GroupKind(resource_group=s["group"], resource_kind=s["kind"]),
                name=s["name"],
                namespace=s["namespace"],
            )
            for s in selectors
        ]
    )


def _restored_as(resource: str, renames: dict[str, str]) -> str:
    parts = resource.split("/")
    return "/".join([renames.get(parts[0], parts[0]), *parts[1:]]) if len(parts) == 3 else resource


def restore_config(
    only: list[str],
    renames: dict[str, str],
    overwrite: bool,
    cluster_kinds: list[tuple[str, str]] | None = None,
) -> Any:
    """RestoreConfig: chosen namespaces, renames as transformation rules, the conflict policy.

    `cluster_kinds` ((group, kind) pairs) limits the cluster-scoped resources restored to those kinds
    (a restore of chosen resources); None keeps the default (all of them unless the restore is partial).
    """
    t = gke_types()
    rc = t.RestoreConfig
    config = rc(
        volume_data_restore_policy=rc.VolumeDataRestorePolicy.RESTORE_VOLUME_DATA_FROM_BACKUP,
        cluster_resource_conflict_policy=(
            rc.ClusterResourceConflictPolicy.USE_BACKUP_VERSION
            if overwrite
            else rc.ClusterResourceConflictPolicy.USE_EXISTING_VERSION
        ),
        namespaced_resource_restore_mode=(
            rc.NamespacedResourceRestoreMode.DELETE_AND_RESTORE
            if overwrite
            else rc.NamespacedResourceRestoreMode.FAIL_ON_CONFLICT
        ),
        # a partial or renamed restore leaves cluster-scoped resources (CRDs, ClusterRoles) alone
        cluster_resource_restore_scope=rc.ClusterResourceRestoreScope(
            no_group_kinds=bool(only or renames), all_group_kinds=not (only or renames)
        ),
    )
    if cluster_kinds is not None:
        config.cluster_resource_restore_scope = rc.ClusterResourceRestoreScope(
            selected_group_kinds=[rc.GroupKind(resource_group=g, resource_kind=k) for g, k in cluster_kinds],
            no_group_kinds=not cluster_kinds,
        )
    if only:
        config.selected_namespaces = t.Namespaces(namespaces=sorted(only))
    else:
        config.all_namespaces = True
    namespace_kind = rc.GroupKind(resource_group="", resource_kind="Namespace")
    for old, new in sorted(renames.items()):
        replace = rc.TransformationRuleAction.Op.REPLACE
        config.transformation_rules.append(
            rc.TransformationRule(
                description=f"rename namespace {old} to {new}",
                resource_filter=rc.ResourceFilter(
                    group_kinds=[namespace_kind], json_path=f".metadata[?(@.name == '{old}')]"
                ),
                field_actions=[rc.TransformationRuleAction(op=replace, path="/metadata/name", value=new)],
            )
        )
        config.transformation_rules.append(
            rc.TransformationRule(
                description=f"move resources of {old} to {new}",
                resource_filter=rc.ResourceFilter(namespaces=[old]),
                field_actions=[
                    rc.TransformationRuleAction(op=replace, path="/metadata/namespace", value=new)
                ],
            )
        )
    return config


def _label(target: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "--" for c in target.lower())[:63]


def _target_plans(settings: BackstopSettings, target: str, gke: GkeSettings | None = None) -> list[Any]:
    gke = gke_settings(settings, gke)
    with converted_errors(f"listing restore plans for {target}"):
        plans = gke_backup_client().list_restore_plans(
            parent=location_path(settings, gke), timeout=TIMEOUT, retry=RETRY
        )
        return [p for p in plans if p.labels.get("backstop-target") == _label(target)]


def _target_restores(settings: BackstopSettings, target: str, gke: GkeSettings | None) -> list[Any]:
    client, found = gke_backup_client(), []
    for plan in _target_plans(settings, target, gke):
        with converted_errors(f"listing restores of {plan.name}"):
            found += list(client.list_restores(parent=plan.name, timeout=TIMEOUT, retry=RETRY))
    return found
