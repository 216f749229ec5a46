"""Namespaces read and removed through the cluster's Kubernetes API.

Backup for GKE has no call that deletes what a restore created, so a drill's '<namespace>-<suffix>'
namespaces, and the namespaces an exact restore removes, are deleted like `kubectl delete namespace`
does (blocks/clients.py builds the session: the cluster's endpoint and CA from the GKE API, or the
local model's API). A namespace still there afterwards (not deleted, not terminating) is named in
the error, so the drill or restore fails loudly. `namespace_digests` lists each namespace's objects
of the kinds digests.py compares (the caller needs read access to them, as `kubectl get` does).
"""

from __future__ import annotations

from typing import Any

from backstop.core.errors import BackstopError, InvalidInput, Unavailable
from blocks.clients import kubernetes_api
from tasks.components.gke.digests import digest, is_system, kinds

TIMEOUT = 30


def _call(session: Any, method: str, url: str) -> Any:
    try:
        return session.request(method, url, timeout=TIMEOUT)
    except Exception as exc:  # connection refused, TLS, DNS: the API server is not reachable
        raise Unavailable(f"Kubernetes API {url.split('/api/')[0]} not reachable: {exc}") from exc


def _items(session: Any, url: str, what: str) -> list[dict[str, Any]]:
    """Every item of a Kubernetes list, page by page."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        try:
            answer = session.request("GET", url, params=params, timeout=TIMEOUT)
        except Exception as exc:  # connection refused, TLS, DNS: the API server is not reachable
            raise Unavailable(f"Kubernetes API {url.split('/api')[0]} not reachable: {exc}") from exc
        if answer.status_code != 200:
            raise BackstopError(f"listing {what}: HTTP {answer.status_code} {answer.text[:200]}")
        body = answer.json()
        items += body.get("items") or []
        params["continue"] = (body.get("metadata") or {}).get("continue")
        if not params["continue"]:
            return items


def list_namespaces(cluster: str) -> list[str]:
    """The namespaces of `cluster` (full name), system ones included."""
    base, session = kubernetes_api(cluster)
    found = _items(session, f"{base}/api/v1/namespaces", f"namespaces of {cluster}")
    return sorted(str(item["metadata"]["name"]) for item in found)


def scratch_namespaces(cluster: str, suffix: str) -> list[str]:
    """Namespaces of `cluster` (full name) whose name ends with '-<suffix>' (a drill's)."""
    return [n for n in list_namespaces(cluster) if n.endswith(f"-{suffix}")]


def namespace_digests(cluster: str, names: list[str] | None, include_secrets: bool) -> dict[str, str]:
    """{namespace: digest} of the namespaces `names` that `cluster` has (None: all but the system
    ones), from their objects listed through the Kubernetes API."""
    base, session = kubernetes_api(cluster)
    present = list_namespaces(cluster)
    chosen = [n for n in present if not is_system(n)] if names is None else [n for n in names if n in present]
    found = {}
    for ns in chosen:
        listed = {
            plural: _items(
                session, f"{base}/{prefix}/namespaces/{ns}/{plural}", f"{plural} of {cluster}/{ns}"
            )
            for prefix, plural in kinds(include_secrets)
        }
        found[ns] = digest(listed)
    return found


def delete_namespaces(cluster: str, names: list[str]) -> None:
    """Delete `names` in `cluster` and check each is gone or terminating; raise naming the others."""
    system = [n for n in names if is_system(n)]
    if system:
        raise InvalidInput(f"refusing to delete system namespace(s) {', '.join(system)} of {cluster}")
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
        raise BackstopError(f"namespace(s) of {cluster} not removed: {', '.join(left)}")
