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
    """A modelled cluster. Backstop reads no cluster (only Backup for GKE), so it cannot compare a
    namespace with the backup nor list what was added: plans_honestly and exact_applies are off."""

    component = "gke"
    scope_options: dict[str, Any] | None = None
    plans_honestly = exact_applies = False
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

    def change(self, source: str) -> None:
        """Workloads change in the cluster; the local model keeps namespaces, which stay."""

    def change_one_kind(self, source: str) -> None:
        """As `change`: the local model keeps namespaces, which stay."""

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
