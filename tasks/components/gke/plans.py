"""Pure logic of the GKE component (its settings models live in blocks/components.py): plan diffing, count checks, restore targets. No I/O.

Backup plans are compared as flat dicts keyed by their update-mask path
(`backup_config.include_secrets`, `retention_policy.backup_retain_days`, ...), so the diff is
both what the run reports ("include_secrets: False -> True") and the update mask it sends.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from backstop.core.errors import InvalidInput
from blocks.components import GkeClusterSettings as GkeClusterSettings
from blocks.components import GkeSettings as GkeSettings

_CLUSTER = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Exactly one of these is set on a plan: they form the `backup_scope` oneof.
SCOPE_PATHS = (
    "backup_config.all_namespaces",
    "backup_config.selected_namespaces",
    "backup_config.selected_applications",
)
COUNT_FIELDS = ("resource_count", "volume_count", "pod_count")


def check_cluster(name: str) -> str:
    """A GKE cluster short name or full resource name."""
    short = name.rsplit("/", 1)[-1]
    full_ok = "/" not in name or re.match(r"^projects/[^/]+/locations/[^/]+/clusters/[^/]+$", name)
    if not _CLUSTER.match(short) or not full_ok:
        raise InvalidInput(f"malformed cluster name {name!r}: use lowercase letters, digits and '-' (max 40)")
    return name


def check_namespace(name: str) -> str:
    if not isinstance(name, str) or not _NAMESPACE.match(name):
        raise InvalidInput(f"malformed namespace {name!r}: use lowercase letters, digits and '-' (max 63)")
    return name


def cluster_path(project: str, location: str, cluster: str) -> str:
    """Full resource name of a cluster given by short or full name."""
    check_cluster(cluster)
    return (
        cluster
        if cluster.startswith("projects/")
        else f"projects/{project}/locations/{location}/clusters/{cluster}"
    )


def desired_plan(item: GkeClusterSettings, cluster: str) -> dict[str, Any]:
    """The plan fields Backstop manages, keyed by update-mask path."""
    return {
        "cluster": cluster,
        "backup_config.all_namespaces": item.all_namespaces,
        "backup_config.selected_namespaces": sorted(item.namespaces),
        "backup_config.selected_applications": sorted(item.applications),
        "backup_config.include_volume_data": item.include_volume_data,
        "backup_config.include_secrets": item.include_secrets,
        "backup_config.encryption_key": item.encryption_key or "",
        "retention_policy.backup_retain_days": item.retain_days,
        "retention_policy.backup_delete_lock_days": item.delete_lock_days,
    }


def plan_diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs: {path: (current, desired)}. Empty means nothing to do."""
    return {path: (current.get(path), value) for path, value in desired.items() if current.get(path) != value}


def update_mask(changes: dict[str, tuple[Any, Any]]) -> list[str]:
    """Mask paths for `changes`. Of the scope oneof only the member being set is sent (setting it clears
    the others); the cluster of a plan is immutable."""
    if "cluster" in changes:
        old, new = changes["cluster"]
        raise InvalidInput(f"backup plan cluster cannot change ({old} -> {new}): give the plan another name")
    paths = [p for p in changes if p not in SCOPE_PATHS]
    if any(p in changes for p in SCOPE_PATHS):
        paths += [p for p in SCOPE_PATHS if changes.get(p, (None, None))[1] not in (False, [], None)][:1]
    return sorted(paths)


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> list[str]:
    """Human lines 'include_secrets: False -> True'."""
    return [f"{path.split('.')[-1]}: {old!r} -> {new!r}" for path, (old, new) in sorted(changes.items())]


def count_problems(
    backup: dict[str, Any],
    previous: dict[str, Any] | None,
    threshold_percent: float,
    contains_volume_data: bool,
) -> list[str]:
    """Missing counts, and counts that dropped by more than `threshold_percent` against `previous`."""
    problems = []
    for field in COUNT_FIELDS:
        value = backup.get(field)
        if value is None or (value <= 0 and (field != "volume_count" or contains_volume_data)):
            problems.append(f"{field} is {value!r}: the backup holds nothing")
    if previous:
        for field in (*COUNT_FIELDS, "size_bytes"):
            old, new = previous.get(field) or 0, backup.get(field) or 0
            if old > 0 and new < old * (1 - threshold_percent / 100):
                drop = 100 * (old - new) / old
                problems.append(
                    f"{field} dropped {drop:.0f}% ({old} -> {new}) against backup {previous.get('backup_id')}, "
                    f"more than the {threshold_percent:g}% threshold"
                )
    return problems


def parse_renames(pairs: list[str] | dict[str, str] | None) -> dict[str, str]:
    """'old=new' strings (or a dict) into {old: new}, checking both namespace names."""
    if not pairs:
        return {}
    items = pairs.items() if isinstance(pairs, dict) else [_split_pair(p) for p in pairs]
    renames = {check_namespace(old): check_namespace(new) for old, new in items}
    if len(set(renames.values())) != len(renames):
        raise InvalidInput(f"two namespaces renamed to the same name: {renames}")
    return renames


def _split_pair(pair: str) -> tuple[str, str]:
    if pair.count("=") != 1:
        raise InvalidInput(f"malformed rename {pair!r}: use old=new")
    old, new = pair.split("=")
    return old.strip(), new.strip()


def parse_target(target: str) -> tuple[str, str | None]:
    """'cluster' or 'cluster:suffix' (restore every namespace as '<namespace>-<suffix>')."""
    cluster, _, suffix = target.partition(":")
    check_cluster(cluster)
    if suffix:
        check_namespace(suffix)
    return cluster, suffix or None


def suffixed(namespace: str, suffix: str) -> str:
    """The scratch name of `namespace` ('shop' -> 'shop-drill-ab12'), cut to 63 characters."""
    name = f"{namespace}-{suffix}"
    if len(name) > 63:
        name = f"{namespace[: 62 - len(suffix) - 7]}-{hashlib.sha256(namespace.encode()).hexdigest()[:6]}-{suffix}"
    return check_namespace(name)


def restore_plan_id(backup_plan_id: str, target_cluster: str, config: dict[str, Any]) -> str:
    """A stable restore plan id per (backup plan, target cluster, restore config)."""
    digest = hashlib.sha256(repr(sorted(config.items())).encode()).hexdigest()[:8]
    short = target_cluster.rsplit("/", 1)[-1]
    return f"bs-{backup_plan_id.removeprefix('backstop-')[:20]}-{short[:20]}-{digest}".lower()


# API groups of common kinds; anything else is core ("") unless given as 'Kind.group'.
KIND_GROUPS = {
    **dict.fromkeys(("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ControllerRevision"), "apps"),
    **dict.fromkeys(("Job", "CronJob"), "batch"),
    **dict.fromkeys(("Ingress", "IngressClass", "NetworkPolicy"), "networking.k8s.io"),
    **dict.fromkeys(
        ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"), "rbac.authorization.k8s.io"
    ),
    "HorizontalPodAutoscaler": "autoscaling",
    "PodDisruptionBudget": "policy",
    "StorageClass": "storage.k8s.io",
    "CustomResourceDefinition": "apiextensions.k8s.io",
}
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")
_GROUP = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def parse_resource(text: str) -> dict[str, str]:
    """'namespace/Kind/name' or 'Kind/name' (cluster-scoped, or any namespace) into a selector dict.

    The kind may carry its API group as 'Kind.group' ('Certificate.cert-manager.io'); common kinds
    get theirs from KIND_GROUPS. Returns {"namespace", "group", "kind", "name"} ("" namespace: any).
    """
    parts = text.split("/") if isinstance(text, str) else []
    if len(parts) not in (2, 3):
        raise InvalidInput(f"malformed resource {text!r}: use namespace/Kind/name or Kind/name")
    namespace = check_namespace(parts[0]) if len(parts) == 3 else ""
    kind, _, group = parts[-2].partition(".")
    name = parts[-1]
    if not _KIND.match(kind) or (group and not _GROUP.match(group)):
        raise InvalidInput(f"malformed kind {parts[-2]!r} in resource {text!r}: use Kind or Kind.group")
    if not _OBJECT_NAME.match(name):
        raise InvalidInput(f"malformed object name {name!r} in resource {text!r}")
    return {"namespace": namespace, "group": group or KIND_GROUPS.get(kind, ""), "kind": kind, "name": name}


def parse_resources(items: list[str] | None) -> list[dict[str, str]]:
    """`parse_resource` over a list, dropping duplicates (order kept)."""
    found: list[dict[str, str]] = []
    for item in items or []:
        selector = parse_resource(item)
        if selector not in found:
            found.append(selector)
    return found


def namespace_volume_problems(
    current: dict[str, int], previous: dict[str, int] | None, previous_id: str, scope: list[str]
) -> list[str]:
    """Namespaces whose volumes were backed up in the previous good backup and are missing now.

    `current` / `previous` map namespace -> volume backups (from VolumeBackup.source_pvc);
    `scope` is the plan's selected namespaces (empty: all); a namespace left out of it on purpose
    is not reported.
    """
    return [
        f"namespace {ns} had {count} volume backup(s) in backup {previous_id} and has none in this one"
        for ns, count in sorted((previous or {}).items())
        if count > 0 and not current.get(ns) and (not scope or ns in scope)
    ]


def namespace_volumes(volume_backups: Any) -> dict[str, int]:
    """Volume backups per namespace, from each VolumeBackup's `source_pvc`."""
    counts: dict[str, int] = {}
    for volume in volume_backups:
        counts[volume.source_pvc.namespace] = counts.get(volume.source_pvc.namespace, 0) + 1
    return counts
