"""The local Composer, Airflow and Backup for GKE servers of a persistent platform (`backstop up`)
keep what they hold across `backstop down` / `backstop up`: the environment the seed made, Airflow's
variables, a GKE backup plan and its backups, a cluster's namespaces as a restore left them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import localdev.servers.airflow_server  # noqa: F401  (each registers its local server)
import localdev.servers.composer_server  # noqa: F401
import localdev.servers.gke_server  # noqa: F401
from localdev.platform import LocalPlatform

pytestmark = pytest.mark.integration

PARENT = "projects/backstop-demo/locations/us-central1"
CLUSTER = f"{PARENT}/clusters/prod"


def _clients() -> tuple[Any, Any, Any]:
    import os

    from blocks.clients import composer_client, gke_backup_client
    from tasks.components.composer.airflow import AirflowApi

    return composer_client(), AirflowApi(os.environ["AIRFLOW_API_URL"], "admin", "admin"), gke_backup_client()


def test_environments_airflow_metadata_and_gke_backups_survive_down_and_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import gke_backup_v1 as gke
    from google.cloud.orchestration.airflow import service_v1 as composer

    from localdev.servers.gke_server import admin_call

    services = ("composer", "airflow", "gke")
    platform = LocalPlatform.with_free_ports(tmp_path, services=services)
    try:
        for key, value in platform.up().items():
            monkeypatch.setenv(key, value)
        environments, airflow, backups = _clients()
        name = f"{PARENT}/environments/analytics"
        config = composer.EnvironmentConfig(
            dag_gcs_prefix="gs://kept-dags/dags",
            software_config=composer.SoftwareConfig(pypi_packages={"pandas": "==2.2.3"}),
        )
        environments.create_environment(
            parent=PARENT, environment=composer.Environment(name=name, config=config), timeout=10
        ).result(timeout=30)
        airflow.create("variables", {"key": "stage", "value": "prod"})
        airflow.create("pools", {"name": "etl", "slots": 4})
        plan = backups.create_backup_plan(
            parent=PARENT,
            backup_plan=gke.BackupPlan(
                cluster=CLUSTER, backup_config=gke.BackupPlan.BackupConfig(all_namespaces=True)
            ),
            backup_plan_id="kept",
            timeout=10,
        ).result(timeout=30)
        backup = backups.create_backup(parent=plan.name, backup_id="b1", timeout=10).result(timeout=30)
        gke_target = platform.env()["GKE_BACKUP_EMULATOR_HOST"]
        admin_call(gke_target, "delete_namespace", cluster=CLUSTER, namespace="shop")
        before = admin_call(gke_target, "namespaces", cluster=CLUSTER)
        assert "shop" not in before

        assert platform.down() == list(reversed(services))
        platform.up()

        environments, airflow, backups = _clients()
        kept = environments.get_environment(name=name, timeout=10)
        assert kept.config.dag_gcs_prefix == "gs://kept-dags/dags"
        assert dict(kept.config.software_config.pypi_packages) == {"pandas": "==2.2.3"}
        assert airflow.get("variables", "stage")["value"] == "prod"
        assert airflow.get("pools", "etl")["slots"] == 4
        again = backups.get_backup(name=backup.name, timeout=10)
        assert again.state == gke.Backup.State.SUCCEEDED and again.uid == backup.uid
        assert admin_call(gke_target, "namespaces", cluster=CLUSTER) == before
        # new names do not reuse the old ones
        second = backups.create_backup(parent=plan.name, backup_id="b2", timeout=10).result(timeout=30)
        assert second.uid != backup.uid
    finally:
        platform.down()
