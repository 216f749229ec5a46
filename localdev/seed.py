"""`backstop seed`: the demo's sample data in the running local platform, without the demo.

Creates (or refreshes) the sample bucket, BigQuery dataset, configuration files, Composer
environment with Airflow metadata, and adds them to the settings' sources (keeping everything else
the settings say), so the scheduled deployments and `backstop backup ...` have something to back up.
Running it again is harmless.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from backstop.core.errors import Conflict
from localdev.demo_data import DEMO_DAGS, DEMO_DATASET, make_environment, seed_bucket, seed_dataset

SAMPLE_BUCKET = "demo-raw-data"
SAMPLE_ENVIRONMENT = "analytics"
SAMPLE_ENVIRONMENT_BUCKET = "demo-composer-analytics"
SAMPLE_CONFIGS = "platform-configs"
SAMPLE_CLUSTER = "prod"  # served by the local Backup for GKE server
AIRFLOW_AUTH_BLOCK = "demo-airflow-auth"
COMPOSER_KEY_BLOCK = "demo-composer-key"


def _ensure_secret(name: str, value: str) -> None:
    """Save Secret block `name` unless it exists (an existing encryption key is never replaced)."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    try:
        Secret.load(name)
    except ValueError:
        Secret(value=SecretStr(value)).save(name)


def _seed_airflow(url: str) -> int:
    """Variables, a pool and a connection in the local Airflow (already there: kept)."""
    from tasks.components.composer.airflow import AirflowApi

    api = AirflowApi(url, "admin", "admin")
    items: list[tuple[str, dict[str, Any]]] = [
        ("variables", {"key": "stage", "value": "prod"}),
        ("variables", {"key": "warehouse_password", "value": "demo-not-a-real-secret"}),
        ("pools", {"name": "etl", "slots": 4, "description": "ETL jobs"}),
        (
            "connections",
            {"connection_id": "warehouse", "conn_type": "postgres", "host": "db", "login": "etl"},
        ),
    ]
    for kind, body in items:
        with contextlib.suppress(Conflict):
            api.create(kind, body)
    return len(items)


def seed_platform(
    settings_block: str, home: Path, objects: int = 2000, rows: int = 300_000
) -> list[dict[str, Any]]:
    """Load the sample data and add it to settings `settings_block`; one row per thing seeded."""
    from backstop.core.secretbox import new_key
    from blocks.clients import bigquery_client, storage_client
    from blocks.components import ConfigSource
    from blocks.settings import load_settings
    from tasks.components.gke.plans import GkeClusterSettings, GkeSettings

    settings = load_settings(settings_block)
    client = storage_client(settings.project)
    seeded: list[dict[str, Any]] = []

    seed_bucket(client, SAMPLE_BUCKET, small=objects)
    seeded.append({"component": "gcs", "source": SAMPLE_BUCKET, "sample": f"{objects + 3} objects"})
    seed_dataset(bigquery_client(settings.project), settings.project, DEMO_DATASET, rows=rows)
    seeded.append(
        {"component": "bigquery", "source": DEMO_DATASET, "sample": f"{rows:,} orders, 2 tables, 1 view"}
    )
    configs_dir = seed_sample_configs(home / "sample-configs")
    seeded.append({"component": "configs", "source": SAMPLE_CONFIGS, "sample": str(configs_dir)})
    environment = make_environment(client, SAMPLE_ENVIRONMENT, SAMPLE_ENVIRONMENT_BUCKET, DEMO_DAGS)
    metadata = _seed_airflow(os.environ["AIRFLOW_API_URL"])
    # counted as the backup counts them: Python files under dags/
    dag_files = sum(1 for name in DEMO_DAGS if name.startswith("dags/") and name.endswith(".py"))
    seeded.append(
        {
            "component": "composer",
            "source": SAMPLE_ENVIRONMENT,
            "sample": f"{dag_files} DAG files ({len(DEMO_DAGS)} files under dags/, plugins/, data/), "
            f"{metadata} Airflow variables/pools/connections",
        }
    )
    seeded.append(
        {"component": "gke", "source": SAMPLE_CLUSTER, "sample": "served by the local Backup for GKE"}
    )

    _ensure_secret(AIRFLOW_AUTH_BLOCK, "admin:admin")  # the local Airflow's login
    _ensure_secret(COMPOSER_KEY_BLOCK, new_key())
    if SAMPLE_BUCKET not in settings.gcs_sources:
        settings.gcs_sources.append(SAMPLE_BUCKET)
    if DEMO_DATASET not in settings.bigquery_datasets:
        settings.bigquery_datasets.append(DEMO_DATASET)
    settings.configs.sources = [s for s in settings.configs.sources if s.name != SAMPLE_CONFIGS]
    settings.configs.sources.append(ConfigSource(name=SAMPLE_CONFIGS, path=str(configs_dir)))
    composer = settings.composer
    if environment not in composer.environments:
        composer.environments.append(environment)
    composer.airflow_auth_block = composer.airflow_auth_block or AIRFLOW_AUTH_BLOCK
    composer.encryption_key_block = composer.encryption_key_block or COMPOSER_KEY_BLOCK
    if settings.gke is None:
        settings.gke = GkeSettings(  # the local Backup for GKE finishes an operation at once: poll often
            clusters=[GkeClusterSettings(cluster=SAMPLE_CLUSTER, drill_namespaces=["shop"])], poll_seconds=0.5
        )
    elif SAMPLE_CLUSTER not in [c.cluster for c in settings.gke.clusters]:
        settings.gke.clusters.append(GkeClusterSettings(cluster=SAMPLE_CLUSTER, drill_namespaces=["shop"]))
    settings.save(settings_block, overwrite=True)
    return seeded


SAMPLE_DIR = Path(__file__).resolve().parent / "sample" / "configs"


def seed_sample_configs(target_dir: str | Path) -> Path:
    """Copy the demo configuration files (pipelines, DAGs, Terraform, per-environment configs and a
    fake Terraform state and .env that backups leave out) into `target_dir`; returns it."""
    target = Path(target_dir)
    shutil.copytree(SAMPLE_DIR, target, dirs_exist_ok=True)
    return target
