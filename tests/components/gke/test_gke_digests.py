"""Namespace digests (tasks/components/gke/digests.py) over what the local Kubernetes API lists, and
the restore plans built from them: a restored copy compares equal, a change does not, a backup
without digests plans as Backup for GKE restores, the cluster's own namespaces are never deleted."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from backstop.core.errors import InvalidInput
from localdev.platform import PROJECT
from localdev.servers.gke_objects import namespace_objects
from localdev.servers.gke_server import GkeBackupServer
from tasks.components.gke.digests import additions, digest, is_system, namespace_changes, steady
from tests.conftest import unique

SHOP = {"resources": 40, "pods": 6, "volumes": 2, "bytes": 2 * 2**30}
PAYMENTS = {"resources": 20, "pods": 4, "volumes": 1, "bytes": 2**30}


def test_a_copy_in_another_cluster_and_namespace_has_the_same_digest() -> None:
    original = namespace_objects("projects/p/locations/l/clusters/a", "shop", SHOP)
    copy = namespace_objects("projects/p/locations/l/clusters/b", "shop-restored", SHOP)
    assert original != copy  # uids, cluster IPs, bound volumes, the cluster's CA differ
    assert digest(original) == digest(copy)


@pytest.mark.parametrize(
    "change",
    [{"pods": 7}, {"resources": 41}, {"volumes": 3}, {"bytes": 2**30}, {"labels": {"release": "canary"}}],
)
def test_any_change_of_a_namespace_changes_its_digest(change: dict[str, Any]) -> None:
    cluster = "projects/p/locations/l/clusters/a"
    assert digest(namespace_objects(cluster, "shop", SHOP | change)) != digest(
        namespace_objects(cluster, "shop", SHOP)
    )


def test_objects_every_namespace_gets_from_the_cluster_are_not_compared() -> None:
    listed = namespace_objects("projects/p/locations/l/clusters/a", "shop", SHOP)
    token = {"metadata": {"name": "default-token-x1"}, "type": "kubernetes.io/service-account-token"}
    assert digest(listed | {"secrets": [token]}) == digest(listed | {"secrets": []})
    ca = next(o for o in listed["configmaps"] if o["metadata"]["name"] == "kube-root-ca.crt")
    ca["data"] = {"ca.crt": "another cluster"}
    assert digest(listed) == digest(namespace_objects("projects/p/locations/l/clusters/a", "shop", SHOP))


def test_plans_compare_each_namespace_with_the_backup() -> None:
    recorded: dict[str, str | None] = {"shop": "d1", "payments": "d2", "jobs": None}
    live = {"shop": "d1", "payments": "other", "jobs": "d3"}
    pairs = [("shop", "shop"), ("payments", "payments"), ("jobs", "jobs"), ("cache", "cache")]
    changes = {a["name"]: a["change"] for a in namespace_changes(pairs, recorded, live)}
    assert changes == {"shop": "unchanged", "payments": "replace", "jobs": "replace", "cache": "note"}
    (renamed,) = namespace_changes([("shop", "shop-copy")], recorded, live)
    assert renamed["name"] == "shop-copy" and renamed["change"] == "create"
    assert renamed["why"] == "from namespace shop of the backup"
    assert steady({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == {"a": "1", "b": None, "c": None}


def test_exact_deletes_only_additions_in_the_plans_scope_and_never_system_namespaces() -> None:
    live = ["shop", "added", "kube-system", "default", "gke-managed-x", "gmp-public", "tools"]
    recorded: dict[str, str | None] = {"shop": "d1"}
    assert additions(live, recorded, {"all_namespaces": True}, []) == ["added", "tools"]
    assert additions(live, recorded, {"all_namespaces": True}, ["tools"]) == ["tools"]
    assert additions(live, recorded, {"namespaces": ["shop", "added"]}, []) == ["added"]
    assert additions(live, recorded, {"all_namespaces": False, "namespaces": []}, []) == []  # applications
    assert all(is_system(ns) for ns in ("kube-system", "default", "gke-managed-x", "gmp-public"))


@pytest.fixture
def cluster(gke_env: GkeBackupServer) -> str:
    name = unique("c")
    gke_env.add_cluster(full(name), {"shop": SHOP, "payments": PAYMENTS})
    return name


def full(cluster: str) -> str:
    return f"projects/{PROJECT}/locations/us-central1/clusters/{cluster}"


def test_the_local_kubernetes_api_lists_namespace_objects(server: GkeBackupServer, cluster: str) -> None:
    base = f"{server.kube_url}/{full(cluster)}"
    listed = requests.get(f"{base}/apis/apps/v1/namespaces/shop/deployments?limit=500", timeout=10).json()
    assert [(d["metadata"]["name"], d["spec"]["replicas"]) for d in listed["items"]] == [("workload", 6)]
    claims = requests.get(f"{base}/api/v1/namespaces/shop/persistentvolumeclaims", timeout=10).json()
    assert len(claims["items"]) == 2
    assert requests.get(f"{base}/api/v1/namespaces/nothing/configmaps", timeout=10).json()["items"] == []
    assert requests.get(f"{base}/apis/apps/v1/namespaces/shop/configmaps", timeout=10).status_code == 404


def gke_settings(cluster: str) -> Any:
    from tasks.components.gke.component import GkeSettings

    item = {"cluster": cluster, "include_secrets": False, "retain_days": 14}
    return GkeSettings(project=PROJECT, location="us-central1", clusters=[item], poll_seconds=0.01)


def test_a_backup_without_digests_plans_as_backup_for_gke_restores(
    settings: Any, store: Any, server: GkeBackupServer, cluster: str
) -> None:
    from tasks.components.gke.component import COMPONENT
    from tasks.components.gke.options import GkeOptions
    from tasks.engine.calls import ComponentCalls
    from tasks.engine.protocol import Context, RestoreRequest

    gke = gke_settings(cluster)
    manifest = ComponentCalls("gke").backup(settings, store, cluster, gke=gke, log=lambda _: None)
    assert sorted(manifest.source_state["namespace_digests"]) == ["payments", "shop"]
    ctx = Context(settings, store, GkeOptions(gke_config=gke))
    request = RestoreRequest(source=cluster, overwrite=True, exact=True, dry_run=True)
    server.set_namespace(full(cluster), "added", PAYMENTS)

    honest = COMPONENT.plan_restore(ctx, manifest, request)
    assert {a["name"]: a["change"] for a in honest.actions} == {
        "shop": "unchanged",
        "payments": "unchanged",
        "added": "delete",
    }
    old = manifest.model_copy(
        update={"source_state": {k: v for k, v in manifest.source_state.items() if k != "namespace_digests"}}
    )
    before = COMPONENT.plan_restore(ctx, old, request)
    assert [a["change"] for a in before.actions] == ["replace", "note"]  # every namespace ("*"), exact said
    assert "records no namespace contents" in before.actions[-1]["why"]

    renamed = Context(settings, store, GkeOptions(gke_config=gke, rename={"shop": "shop-copy"}))
    plan = COMPONENT.plan_restore(
        renamed, manifest, RestoreRequest(source=cluster, only=["shop"], exact=True)
    )
    assert [(a["name"], a["change"]) for a in plan.actions] == [("shop-copy", "create"), ("exact", "note")]
    assert not plan.into_original


def test_system_namespaces_are_never_deleted(server: GkeBackupServer, cluster: str) -> None:
    from tasks.components.gke.namespaces import delete_namespaces

    server.set_namespace(full(cluster), "kube-system", PAYMENTS)
    with pytest.raises(InvalidInput, match="kube-system"):
        delete_namespaces(full(cluster), ["added", "kube-system"])
    assert "kube-system" in server.namespaces(full(cluster))
