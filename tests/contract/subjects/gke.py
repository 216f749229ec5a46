"""The contract subject of the gke component (see tests/contract/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localdev.platform import PROJECT
from tests.conftest import unique

GKE_LOCATION = "us-central1"
COMPOSER_PARENT = "projects/backstop-demo/locations/europe-west1"


class GkeSubject:
    """A modelled cluster: its state is every namespace's spec, from which the local Kubernetes API
    lists the namespace's objects (localdev/servers/gke_objects.py), so Backstop compares and
    restores what a user would see. The backup plan covers all namespaces: what lies outside its
    scope is the cluster's own system namespaces."""

    component = "gke"
    # a name `only` takes that the seeded backup does not hold (a namespace)
    absent_part = "nowhere"
    scope_options: dict[str, Any] | None = None
    subset_options: dict[str, Any] | None = None  # it takes no backup of part of a source
    namespaces = {
        "shop": {"resources": 40, "pods": 6, "volumes": 2, "bytes": 2 * 2**30},
        "payments": {"resources": 20, "pods": 4, "volumes": 1, "bytes": 2**30},
    }

    def __init__(self, server: Any, settings: Any) -> None:
        from tasks.components.gke.component import GkeSettings

        self.server, self.settings = server, settings
        settings.gke = GkeSettings(project=PROJECT, location=GKE_LOCATION, clusters=[], poll_seconds=0.01)

    def full(self, cluster: str) -> str:
        return f"projects/{PROJECT}/locations/{GKE_LOCATION}/clusters/{cluster}"

    def seed(self) -> str:
        from tasks.components.gke.plans import GkeClusterSettings

        name = unique("c")
        self.server.add_cluster(self.full(name), self.namespaces)
        self.settings.gke.clusters.append(
            GkeClusterSettings(
                cluster=name, include_secrets=False, retain_days=14, drill_namespaces=["payments"]
            )
        )
        return name

    def state(self, where: str) -> Any:
        return self.server.namespaces(self.full(where.split(":")[0]))

    def _set(self, cluster: str, namespace: str, spec: dict[str, Any]) -> None:
        """Through the server's admin hook, as a deploy would change the cluster."""
        from localdev.servers.gke_server import admin_call

        admin_call(
            self.server.target, "set_namespace", cluster=self.full(cluster), namespace=namespace, spec=spec
        )

    def change(self, source: str) -> None:
        """A deploy: shop gets one more resource and two more pods."""
        shop = self.state(source)["shop"]
        self._set(source, "shop", shop | {"resources": shop["resources"] + 1, "pods": shop["pods"] + 2})

    def change_one_kind(self, source: str) -> None:
        """Metadata only: the labels of shop's Deployments."""
        shop = self.state(source)["shop"]
        self._set(source, "shop", shop | {"labels": {"release": "canary"}})

    def add_in_scope(self, source: str) -> None:
        self._set(source, "added-jobs", {"resources": 3, "pods": 1, "volumes": 0, "bytes": 0})

    def add_outside_scope(self, source: str) -> None:
        """The cluster's own namespaces, which a backup of all namespaces never deletes."""
        for ns in ("kube-system", "gmp-public"):
            self._set(source, ns, {"resources": 12, "pods": 3, "volumes": 0, "bytes": 0})

    def new_target(self, source: str) -> str:
        name = unique("c")
        self.server.add_cluster(self.full(name), {})
        return name

    def gone(self, target: str) -> bool:
        """No restore plan for the scratch target, and none of its '-<suffix>' namespaces left."""
        from tasks.components.gke.restore import _target_plans

        cluster, _, suffix = target.partition(":")
        left = [
            ns for ns in self.server.namespaces(self.full(cluster)) if suffix and ns.endswith(f"-{suffix}")
        ]
        return not _target_plans(self.settings, target, self.settings.gke) and not left

    def expire_outside_data(self, manifest: Any) -> None:
        """What Backup for GKE does when its own retention ends: it deletes the backup after the
        plan's retain_days."""
        from blocks.clients import gke_backup_client

        name = manifest.source_state["backup_name"]
        gke_backup_client().delete_backup(name=name, timeout=20).result(timeout=30)


def make(request: pytest.FixtureRequest, gcs: Any, bq: Any, settings: Any) -> Iterator[GkeSubject]:
    yield GkeSubject(request.getfixturevalue("gke_server"), settings)
