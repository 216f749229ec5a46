"""Scratch namespaces a drill restored, removed through the cluster's Kubernetes API.

Backup for GKE has no call that deletes what a restore created, so a drill's '<namespace>-<suffix>'
namespaces are deleted like `kubectl delete namespace` does (blocks/clients.py builds the session:
the cluster's endpoint and CA from the GKE API, or the local model's API). A namespace still there
afterwards (not deleted, not terminating) is named in the error, so the drill fails loudly.
"""

from __future__ import annotations

from typing import Any

from backstop.core.errors import BackstopError, Unavailable
from blocks.clients import kubernetes_api

TIMEOUT = 30


def _call(session: Any, method: str, url: str) -> Any:
    try:
        return session.request(method, url, timeout=TIMEOUT)
    except Exception as exc:  # connection refused, TLS, DNS: the API server is not reachable
        raise Unavailable(f"Kubernetes API {url.split('/api/')[0]} not reachable: {exc}") from exc


def scratch_namespaces(cluster: str, suffix: str) -> list[str]:
    """Namespaces of `cluster` (full name) whose name ends with '-<suffix>' (a drill's)."""
    base, session = kubernetes_api(cluster)
    answer = _call(session, "GET", f"{base}/api/v1/namespaces")
    if answer.status_code != 200:
        raise BackstopError(f"listing namespaces of {cluster}: HTTP {answer.status_code} {answer.text[:200]}")
    names = [str(item["metadata"]["name"]) for item in answer.json().get("items", [])]
    return sorted(n for n in names if n.endswith(f"-{suffix}"))


def delete_namespaces(cluster: str, names: list[str]) -> None:
    """Delete `names` in `cluster` and check each is gone or terminating; raise naming the others."""
    base, session = kubernetes_api(cluster)
    left: list[str] = []
    for name in names:
        url = f"{base}/api/v1/namespaces/{name}"
        deleted = _call(session, "DELETE", url)
        if deleted.status_code not in (200, 202, 404):
            left.append(f"{name} (HTTP {deleted.status_code}: {deleted.text[:120]})")
            continue
        after = _call(session, "GET", url)
        if after.status_code == 200 and after.json().get("status", {}).get("phase") != "Terminating":
            left.append(f"{name} (still {after.json().get('status', {}).get('phase', 'present')})")
    if left:
        raise BackstopError(f"scratch namespace(s) of {cluster} not removed: {', '.join(left)}")
