"""The issue-20 story, through the `backstop` command: Cloud Composer on the shipped schedules (DAGs
and config daily, metadata hourly), then one DAG file changed and another deleted. `restore`,
`recover --as-of` and `drill` work on the restore point, so the DAG files come back byte for byte
although the newest backup holds only metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import unique

pytestmark = pytest.mark.integration

PARENT = "projects/backstop-demo/locations/europe-west1"
DAGS = {"dags/etl.py": b"from airflow import DAG\n\nprint('etl')\n", "dags/report.py": b"print('report')\n"}


@pytest.fixture
def environment(gcs: Any, platform: Any, prefect_harness: None) -> Iterator[tuple[str, Any]]:
    """A Composer environment (local Composer and Airflow servers) holding DAGS: (short name, bucket)."""
    from google.cloud.orchestration.airflow import service_v1 as composer

    from blocks.clients import composer_client
    from localdev.servers.airflow_server import AirflowServer
    from localdev.servers.composer_server import ComposerServer
    from tasks.components.composer.airflow import AirflowApi

    server, airflow = ComposerServer().start(), AirflowServer().start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COMPOSER_EMULATOR_HOST", server.target)
        short, bucket = unique("env"), gcs.create_bucket(unique("composer"))
        for name, data in DAGS.items():
            bucket.blob(name).upload_from_string(data)
        config = composer.EnvironmentConfig(
            dag_gcs_prefix=f"gs://{bucket.name}/dags", airflow_uri=airflow.url.removesuffix("/api/v1")
        )
        environment = composer.Environment(name=f"{PARENT}/environments/{short}", config=config)
        composer_client().create_environment(parent=PARENT, environment=environment, timeout=10).result(10)
        AirflowApi(airflow.url, "admin", "admin").create("variables", {"key": "stage", "value": "prod"})
        yield short, bucket
    airflow.stop()
    server.stop()


@pytest.fixture
def composer_settings(saved_settings: str, environment: tuple[str, Any]) -> str:
    """The saved settings block with the environment configured (Airflow login and key in Secret blocks)."""
    from prefect.blocks.system import Secret

    from backstop.core.secretbox import new_key
    from blocks.settings import load_settings
    from tasks.components.composer.component import ComposerSettings

    auth, key = unique("airflow-auth"), unique("composer-key")
    Secret(value="admin:admin").save(auth)
    Secret(value=new_key()).save(key)
    settings = load_settings(saved_settings)
    settings.composer = ComposerSettings(
        environments=[f"{PARENT}/environments/{environment[0]}"],
        airflow_auth_block=auth,
        encryption_key_block=key,
    )
    settings.save(saved_settings, overwrite=True)
    return saved_settings


def test_split_schedule_restore_recover_and_drill_bring_every_dag_back(
    environment: tuple[str, Any], composer_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from backstop_cli.main import main

    short, bucket = environment

    def backstop(*argv: str) -> str:
        capsys.readouterr()
        assert main(["--settings", composer_settings, *argv]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    def dag_files() -> dict[str, bytes]:
        return {b.name: b.download_as_bytes() for b in bucket.client.list_blobs(bucket.name)}

    def damage() -> None:
        bucket.blob("dags/etl.py").upload_from_string(b"broken\n")
        bucket.blob("dags/report.py").delete()

    backstop("backup", "composer", "--environment", short, "--part", "dags", "--part", "config")
    backstop("backup", "composer", "--environment", short, "--part", "metadata")  # the newest: metadata only
    as_of = datetime.now(UTC).isoformat()
    (point, *_) = json.loads(backstop("list", "--restore-points", "--source", short, "--json"))[
        "restore_points"
    ]
    assert point["parts"]["dags"]["backup_id"] != point["parts"]["metadata"]["backup_id"]

    damage()
    backstop("restore", "composer", "--source", short, "--overwrite", "--yes")
    assert dag_files() == DAGS

    damage()
    backstop("recover", "--as-of", as_of, "--component", "composer", "--yes")
    assert dag_files() == DAGS

    (drilled,) = json.loads(backstop("drill", "--component", "composer", "--json"))
    assert drilled["passed"] and "dags 2" in drilled["restored"], drilled


def test_prune_keeps_each_part_s_newest_backup_so_the_dags_survive_hourly_metadata(
    environment: tuple[str, Any], composer_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retention applies part by part: keeping the newest backup (keep_last 1) keeps the newest of
    the DAGs too, not only the newest run (metadata), and the restore still brings every DAG back."""
    from backstop_cli.main import main
    from blocks.settings import RetentionSettings, load_settings

    short, bucket = environment
    settings = load_settings(composer_settings)
    settings.retention = RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    settings.save(composer_settings, overwrite=True)

    def backstop(*argv: str) -> str:
        capsys.readouterr()
        assert main(["--settings", composer_settings, *argv]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    def backup(*parts: str) -> str:
        argv = [a for part in parts for a in ("--part", part)]
        (row,) = json.loads(backstop("backup", "composer", "--environment", short, *argv, "--json"))
        return str(row["backup_id"])

    dags = backup("dags", "config")
    older_metadata, newest_metadata = backup("metadata"), backup("metadata")

    pruned = json.loads(backstop("prune", "--component", "composer", "--source", short, "--json"))
    decisions = {r["backup_id"]: (r["decision"], r["reason"]) for r in pruned["rows"]}
    assert decisions[dags][0] == "keep" and decisions[dags][1].startswith("dags, config: newest validated"), (
        decisions
    )
    assert decisions[newest_metadata][0] == "keep" and decisions[older_metadata][0] == "remove", decisions
    listed = json.loads(backstop("list", "--component", "composer", "--source", short, "--json"))
    assert {r["backup_id"] for r in listed["backups"]} == {dags, newest_metadata}

    bucket.blob("dags/etl.py").upload_from_string(b"broken\n")
    bucket.blob("dags/report.py").delete()
    backstop("restore", "composer", "--source", short, "--overwrite", "--yes")
    assert {b.name: b.download_as_bytes() for b in bucket.client.list_blobs(bucket.name)} == DAGS
