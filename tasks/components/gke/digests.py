"""Content digests of namespaces, compared to plan restores honestly. Pure: no I/O (namespaces.py
lists the objects through the cluster's Kubernetes API).

A namespace's digest is a SHA-256 over its objects of a fixed set of kinds (KINDS: core v1
ConfigMaps, Services, PersistentVolumeClaims, ServiceAccounts, Secrets when the backup takes
Secrets; apps/v1 Deployments, StatefulSets, DaemonSets), each normalised to what a restore brings
back: without what the cluster assigns (metadata.uid, resourceVersion, creationTimestamp,
generation, managedFields, selfLink, ownerReferences' uids, status; a Service's cluster IPs and
node ports; a claim's bound volume; a ServiceAccount's token secrets; annotations controllers and
kubectl write) and without the namespace's name, so a namespace restored under another name
compares equal. Objects every namespace gets from the cluster (ConfigMap kube-root-ca.crt,
service-account token Secrets) are left out. Other kinds (Ingresses, Roles, custom resources, ...)
are not compared: a change only there plans "unchanged".

System namespaces (kube-system, kube-public, kube-node-lease, default, gke-*, gmp-*) belong to the
cluster: they are never digested, never planned and never deleted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# (API path prefix, plural) of the kinds compared; the Secrets only when the backup takes Secrets
KINDS = (
    ("api/v1", "configmaps"),
    ("api/v1", "services"),
    ("api/v1", "persistentvolumeclaims"),
    ("api/v1", "serviceaccounts"),
    ("apis/apps/v1", "deployments"),
    ("apis/apps/v1", "statefulsets"),
    ("apis/apps/v1", "daemonsets"),
)
SECRETS = ("api/v1", "secrets")
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "default"})
SYSTEM_PREFIXES = ("gke-", "gmp-")
ASSIGNED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "namespace",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
ASSIGNED_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",  # holds the namespace's name
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)
CLUSTER_OBJECTS = {("configmaps", "kube-root-ca.crt")}


def is_system(namespace: str) -> bool:
    """Whether `namespace` is the cluster's own (never compared, planned or deleted)."""
    return namespace in SYSTEM_NAMESPACES or namespace.startswith(SYSTEM_PREFIXES)


def kinds(include_secrets: bool) -> tuple[tuple[str, str], ...]:
    """The kinds a digest covers: Secrets only when the backup takes them."""
    return (*KINDS, SECRETS) if include_secrets else KINDS


def normalise(plural: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    """`obj` as a restore brings it back (see the module docstring); None: not compared."""
    metadata = dict(obj.get("metadata") or {})
    if (plural, metadata.get("name")) in CLUSTER_OBJECTS:
        return None
    if plural == "secrets" and obj.get("type") == "kubernetes.io/service-account-token":
        return None
    for key in ASSIGNED_METADATA:
        metadata.pop(key, None)
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in ASSIGNED_ANNOTATIONS
    }
    metadata.pop("annotations", None)
    if annotations:
        metadata["annotations"] = annotations
    if metadata.get("ownerReferences"):
        metadata["ownerReferences"] = [
            {k: v for k, v in ref.items() if k != "uid"} for ref in metadata["ownerReferences"]
        ]
    found = {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}
    found["metadata"] = metadata
    if plural == "serviceaccounts":
        found.pop("secrets", None)
    spec = dict(found.get("spec") or {})
    if plural == "services":
        for key in ("clusterIP", "clusterIPs", "healthCheckNodePort"):
            spec.pop(key, None)
        spec["ports"] = [{k: v for k, v in p.items() if k != "nodePort"} for p in spec.get("ports") or []]
    if plural == "persistentvolumeclaims":
        spec.pop("volumeName", None)
    if "spec" in found:
        found["spec"] = spec
    return found


def digest(listed: dict[str, list[dict[str, Any]]]) -> str:
    """The digest of a namespace from its objects listed per plural ({"configmaps": [...], ...})."""
    objects = sorted(
        (plural, str((obj.get("metadata") or {}).get("name")), kept)
        for plural, items in listed.items()
        for obj in items
        if (kept := normalise(plural, obj)) is not None
    )
    text = json.dumps(objects, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def steady(before: dict[str, str], after: dict[str, str]) -> dict[str, str | None]:
    """The digests to record for a backup from the digests read before and after it: a namespace
    that changed, appeared or went while the backup ran gets None (its content is not known)."""
    return {ns: before[ns] if before.get(ns) == after.get(ns) else None for ns in sorted({*before, *after})}


def namespace_changes(
    pairs: list[tuple[str, str]], recorded: dict[str, str | None], live: dict[str, str]
) -> list[dict[str, Any]]:
    """Per (backed-up namespace, name in the target): "create" where the target lacks it,
    "unchanged" where its digest equals the backup's, "replace" where it differs or the backup's is
    not known; a namespace the backup does not hold is a "note" (nothing restored). Each action is
    named after the namespace it changes in the target (a renamed one says where it comes from)."""
    actions = []
    for ns, restore_as in pairs:
        action: dict[str, Any] = {"name": restore_as, "namespace": ns, "restore_as": restore_as}
        if restore_as != ns:
            action["why"] = f"from namespace {ns} of the backup"
        if ns not in recorded:
            action |= {"name": ns, "change": "note", "why": "not in the backup: nothing to restore"}
        elif restore_as not in live:
            action["change"] = "create"
        elif recorded[ns] is not None and live[restore_as] == recorded[ns]:
            action["change"] = "unchanged"
        else:
            action["change"] = "replace"
            if recorded[ns] is None:
                action["why"] = "; ".join(
                    filter(None, [action.get("why"), "changed while the backup ran: not compared"])
                )
        actions.append(action)
    return actions


def additions(
    live: list[str], recorded: dict[str, str | None], state: dict[str, Any], only: list[str]
) -> list[str]:
    """Namespaces of the target that the backup does not hold, inside the backup plan's scope (all
    namespaces, or its selected ones; a backup of chosen applications has none) and inside `only`
    when given; system namespaces never."""
    selected = state.get("namespaces") or []
    return sorted(
        ns
        for ns in live
        if ns not in recorded
        and not is_system(ns)
        and (state.get("all_namespaces") or ns in selected)
        and (not only or ns in only)
    )
