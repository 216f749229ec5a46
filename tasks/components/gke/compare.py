"""GKE restores compared with the target cluster, namespace by namespace, through its Kubernetes API.

A backup records a content digest per namespace (`namespace_digests` in the manifest's source state,
read before and after the Backup for GKE backup; digests.py says what a digest covers). A restore
plan then compares each namespace it covers with the target's namespace of the same (renamed or
suffixed) name: absent -> "create", equal -> "unchanged" (left out of the Backup for GKE restore),
different -> "replace". With `exact`, into a whole cluster (not renamed, not a drill's scratch
restore), the target's namespaces inside the backup plan's scope that the backup does not hold are
planned as "delete" and deleted through the Kubernetes API.

Without digests (a backup made before Backstop recorded them, one of chosen applications, a cluster
whose API could not be read) or for a restore of chosen resources, the plan is what Backup for GKE
would do: every namespace "create", or "replace" with overwrite; `exact` is then a note.
"""

from __future__ import annotations

from typing import Any

from backstop.core.errors import BackstopError
from backstop.core.manifest import BackupManifest
from blocks.settings import BackstopSettings
from tasks.components.gke.api import Log
from tasks.components.gke.digests import additions, namespace_changes, steady
from tasks.components.gke.namespaces import list_namespaces, namespace_digests
from tasks.components.gke.plans import GkeClusterSettings, GkeSettings
from tasks.components.gke.restore import restore_scope
from tasks.engine.protocol import RestoreRequest

NOT_EXACT = "exact: not applied to GKE here"


def read_digests(cluster: str, item: GkeClusterSettings, log: Log) -> dict[str, str] | None:
    """The digests of the namespaces the cluster's backup plan covers; None when the plan backs up
    chosen applications or the cluster's Kubernetes API cannot be read (logged: the backup goes on)."""
    if item.applications:
        return None
    try:
        return namespace_digests(
            cluster, None if item.all_namespaces else item.namespaces, item.include_secrets
        )
    except BackstopError as exc:
        log(f"namespace contents of {cluster} not read ({exc}): restores of this backup plan every namespace")
        return None


def backup_digests(before: dict[str, str] | None, after: dict[str, str] | None) -> dict[str, Any]:
    """What the manifest records: the digests steady over the backup, or nothing."""
    return {} if before is None or after is None else {"namespace_digests": steady(before, after)}


def _as_before(listed: list[dict[str, Any]], request: RestoreRequest, why: str) -> list[dict[str, Any]]:
    """The plan without a comparison: what Backup for GKE does with each namespace or resource."""
    change = "replace" if request.overwrite else "create"
    actions = [{"name": a.get("resource") or a.get("namespace"), "change": change, **a} for a in listed]
    if request.exact:  # said, not silently ignored: a recovery as of T asks every component
        actions.append({"name": "exact", "change": "note", "why": f"{NOT_EXACT}: {why}"})
    return actions


def plan_actions(
    manifest: BackupManifest,
    request: RestoreRequest,
    listed: list[dict[str, Any]],
    cluster: str,
    whole: bool,
    resources: bool,
) -> tuple[list[dict[str, Any]], list[str] | None]:
    """(actions, the backed-up namespaces to restore; None: all the restore covers) of a restore
    whose namespaces are `listed` ({"namespace", "restore_as"}) into `cluster` (full name).
    `whole`: into a whole cluster, where `exact` applies."""
    state = manifest.source_state
    recorded: dict[str, str | None] | None = state.get("namespace_digests")
    if recorded is None:
        why = f"backup {manifest.backup_id} records no namespace contents to compare with"
        return _as_before(listed, request, why), None
    if resources:
        return _as_before(
            listed, request, "a restore of chosen resources is compared by Backup for GKE"
        ), None
    pairs = [(a["namespace"], a["restore_as"]) for a in listed if "namespace" in a]
    try:
        present = list_namespaces(cluster)
        there = [as_ for ns, as_ in pairs if ns in recorded and as_ in present]
        live = namespace_digests(cluster, there, bool(state.get("contains_secrets")))
    except BackstopError as exc:
        return _as_before(listed, request, f"{cluster} not read: {exc}"), None
    actions = namespace_changes(pairs, recorded, {ns: live.get(ns, "") for ns in present})
    keep = [a["namespace"] for a in actions if a["change"] in ("create", "replace")]
    if request.exact and whole:
        actions += [
            {"name": ns, "change": "delete", "namespace": ns, "why": "not in the backup (added after it)"}
            for ns in additions(present, recorded, state, request.only or [])
        ]
    elif request.exact:
        actions.append(
            {"name": "exact", "change": "note", "why": f"{NOT_EXACT}: a renamed or scratch restore"}
        )
    return actions, keep


def differences(
    settings: BackstopSettings,
    gke: GkeSettings,
    manifest: BackupManifest,
    target: str,
    only: list[str] | None,
    options: Any,
) -> list[str] | None:
    """The restored namespaces of `target` whose content differs from the backup's digest (or that
    are missing); None when that cannot be compared (no digests, chosen resources, API not read)."""
    recorded = manifest.source_state.get("namespace_digests")
    if recorded is None or options.resources:
        return None
    scope = restore_scope(settings, gke, manifest, target, only, False, options.rename, None)
    pairs = [(ns, scope.renames.get(ns, ns)) for ns in scope.chosen or sorted(recorded) if recorded.get(ns)]
    if not pairs:
        return None
    try:
        live = namespace_digests(
            scope.cluster, [as_ for _, as_ in pairs], bool(manifest.source_state.get("contains_secrets"))
        )
    except BackstopError:
        return None
    return [
        f"namespace {as_} {'is missing' if as_ not in live else 'differs from the backup'}"
        for ns, as_ in pairs
        if live.get(as_) != recorded[ns]
    ]
