"""The Kubernetes objects a modelled namespace lists, synthesized from its spec (`gke_cluster`).

The local Kubernetes API (`gke_server.KubeNamespaces`) serves these lists, so Backstop reads a
modelled cluster as it reads a real one. The objects follow the spec deterministically: a restored
copy of a namespace lists the same content, and any change of the spec lists different content:

- a ConfigMap `workload-settings` whose data are the spec's counts (the model's stand-in for a
  namespace's configuration: a change of any count is a change of configuration);
- the named objects (`objects`: ["Kind/name", ...]) of the listed kinds; without a named Deployment,
  one Deployment `workload`; the pods are shared out as the Deployments' replicas, and the spec's
  `labels` ({key: value}) are the Deployments' labels (metadata only);
- one PersistentVolumeClaim per volume (`claims`), each requesting its share of `bytes`;
- the ServiceAccount `default` and the ConfigMap `kube-root-ca.crt` every namespace has.

What a cluster assigns differs between clusters and namespaces, as on a real cluster: uid,
resourceVersion, creationTimestamp, managedFields, status, a Service's clusterIP, a claim's bound
volume, the cluster's CA in `kube-root-ca.crt`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from localdev.servers.gke_cluster import claims

# plural -> (API path prefix, kind): the kinds the model lists
PLURALS = {
    "configmaps": ("api/v1", "ConfigMap"),
    "services": ("api/v1", "Service"),
    "persistentvolumeclaims": ("api/v1", "PersistentVolumeClaim"),
    "serviceaccounts": ("api/v1", "ServiceAccount"),
    "secrets": ("api/v1", "Secret"),
    "deployments": ("apis/apps/v1", "Deployment"),
    "statefulsets": ("apis/apps/v1", "StatefulSet"),
    "daemonsets": ("apis/apps/v1", "DaemonSet"),
}
KINDS = {kind: plural for plural, (_, kind) in PLURALS.items()}


def _hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _assigned(cluster: str, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """The metadata a cluster assigns an object (different in every cluster and namespace)."""
    h = _hash(cluster, namespace, kind, name)
    return {
        "name": name,
        "namespace": namespace,
        "uid": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}",
        "resourceVersion": str(int(h[:6], 16)),
        "creationTimestamp": f"2026-01-{1 + int(h[6:8], 16) % 28:02d}T00:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Apply", "time": "2026-01-01T00:00:00Z"}],
    }


def _workload(kind: str, name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    selector = {"app": name}
    body: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": selector},
            "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1"}]},
        },
    }
    if kind != "DaemonSet":
        body["replicas"] = replicas
    return {
        "metadata": {"labels": selector | labels, "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": body,
        "status": {"replicas": replicas, "readyReplicas": replicas, "observedGeneration": 1},
    }


def _content(cluster: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """What one object holds beyond its assigned metadata."""
    if kind in ("Deployment", "StatefulSet", "DaemonSet"):
        return _workload(kind, name, 0, dict(spec.get("labels") or {}))
    if kind == "Service":
        ip = int(_hash(cluster, name)[:4], 16)
        return {
            "spec": {
                "selector": {"app": name},
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                "clusterIP": f"10.{ip >> 8}.{ip & 255}.10",
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        }
    if kind == "PersistentVolumeClaim":
        size = int(spec["bytes"]) // max(int(spec["volumes"]), 1)
        return {
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": str(size)}},
                "storageClassName": "standard-rwo",
                "volumeName": f"pvc-{_hash(cluster, name)[:12]}",
            },
            "status": {"phase": "Bound"},
        }
    if kind == "Secret":
        return {"type": "Opaque", "data": {"value": _hash("secret", name)[:16]}}
    if kind == "ConfigMap":
        return {"data": {"name": name}}
    return {}


def namespace_objects(cluster: str, namespace: str, spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The objects of `namespace` (spec `spec`) in `cluster`, per plural of PLURALS."""
    named = [o.split("/", 1) for o in spec.get("objects", []) if o.split("/", 1)[0] in KINDS]
    pvcs = claims(spec)
    found = [(k, n) for k, n in named if k != "PersistentVolumeClaim"]
    if not any(k == "Deployment" for k, _ in found):
        found.append(("Deployment", "workload"))
    found += [("PersistentVolumeClaim", p) for p in pvcs]
    found += [
        ("ServiceAccount", "default"),
        ("ConfigMap", "kube-root-ca.crt"),
        ("ConfigMap", "workload-settings"),
    ]
    workloads = [n for k, n in found if k in ("Deployment", "StatefulSet")]
    lists: dict[str, list[dict[str, Any]]] = {plural: [] for plural in PLURALS}
    for kind, name in sorted(set(found)):
        obj = _content(cluster, kind, name, spec)
        obj["metadata"] = _assigned(cluster, namespace, kind, name) | obj.get("metadata", {})
        if name in workloads and kind in ("Deployment", "StatefulSet"):
            share = int(spec["pods"]) // len(workloads) + (
                workloads.index(name) < int(spec["pods"]) % len(workloads)
            )
            obj["spec"]["replicas"] = obj["status"]["replicas"] = obj["status"]["readyReplicas"] = share
        if (kind, name) == ("ConfigMap", "kube-root-ca.crt"):
            obj["data"] = {"ca.crt": f"-----BEGIN CERTIFICATE-----\n{_hash(cluster)[:32]}\n"}
        if (kind, name) == ("ConfigMap", "workload-settings"):
            obj["data"] = {k: str(spec[k]) for k in ("resources", "pods", "volumes", "bytes")}
        lists[KINDS[kind]].append(obj)
    return lists
