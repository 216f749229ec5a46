"""The contract subject of the composer component (see tests/contract/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import unique

GKE_LOCATION = "us-central1"
COMPOSER_PARENT = "projects/backstop-demo/locations/europe-west1"


class ComposerSubject:
    """An environment (DAG bucket + Airflow); an exact restore's scope is dags/, plugins/, data/
    and the Airflow variables, connections and pools."""

    component = "composer"
    # a name `only` takes that the seeded backup does not hold (a DAG file)
    absent_part = "dags/no_such_dag.py"
    # The shipped schedules: DAGs and config daily, metadata hourly (prefect.yaml).
    split_parts = [["dags", "config"], ["metadata"]]
    scope_options: dict[str, Any] | None = None
    subset_options: dict[str, Any] | None = None  # it takes no backup of part of a source

    def __init__(self, gcs: Any, settings: Any) -> None:
        self.gcs, self.settings = gcs, settings
        self.airflows: dict[str, Any] = {}

    def _environment(self, files: dict[str, bytes]) -> str:
        from google.cloud.orchestration.airflow import service_v1 as composer

        from blocks.clients import composer_client
        from localdev.servers.airflow_server import AirflowServer

        airflow = AirflowServer().start()
        short = unique("env")
        bucket = self.gcs.create_bucket(unique("composer"))
        for name, data in files.items():
            bucket.blob(name).upload_from_string(data)
        config = composer.EnvironmentConfig(
            dag_gcs_prefix=f"gs://{bucket.name}/dags", airflow_uri=airflow.url.removesuffix("/api/v1")
        )
        env = composer.Environment(name=f"{COMPOSER_PARENT}/environments/{short}", config=config)
        composer_client().create_environment(parent=COMPOSER_PARENT, environment=env, timeout=10).result(
            timeout=10
        )
        self.airflows[short] = airflow
        self.settings.composer.environments.append(f"{COMPOSER_PARENT}/environments/{short}")
        return short

    def api(self, short: str) -> Any:
        from tasks.components.composer.airflow import AirflowApi

        return AirflowApi(self.airflows[short].url, "admin", "admin")

    def seed(self) -> str:
        short = self._environment({"dags/etl.py": b"print('etl')\n", "plugins/p.py": b"X = 1\n"})
        api = self.api(short)
        api.create("variables", {"key": "stage", "value": "prod"})
        api.create("pools", {"name": "etl", "slots": 3, "description": "ETL"})
        return short

    def _bucket(self, short: str) -> str:
        from blocks.clients import composer_client

        env = composer_client().get_environment(name=f"{COMPOSER_PARENT}/environments/{short}", timeout=10)
        return str(env.config.dag_gcs_prefix.removeprefix("gs://").split("/")[0])

    def state(self, where: str) -> Any:
        if where.startswith("gs://"):
            return {b.name: b.download_as_bytes() for b in self.gcs.list_blobs(where.removeprefix("gs://"))}
        short = where.rsplit("/", 1)[-1]
        files = {  # snapshots/ is Composer's own (SaveSnapshot's default place), not the environment's
            b.name: b.download_as_bytes()
            for b in self.gcs.list_blobs(self._bucket(short))
            if not b.name.startswith("snapshots/")
        }
        api = self.api(short)
        variables = {v["key"]: v["value"] for v in api.list("variables")}
        pools = {p["name"]: p["slots"] for p in api.list("pools")}
        return files, variables, pools

    def change(self, source: str) -> None:
        self.gcs.bucket(self._bucket(source)).blob("dags/etl.py").upload_from_string(b"print('changed')\n")
        self.api(source).update("variables", "stage", {"key": "stage", "value": "test"})

    def change_one_kind(self, source: str) -> None:
        """Airflow metadata only (one variable), no DAG file."""
        self.api(source).update("variables", "stage", {"key": "stage", "value": "test"})

    def add_in_scope(self, source: str) -> None:
        self.gcs.bucket(self._bucket(source)).blob("dags/added.py").upload_from_string(b"print('new')\n")
        self.api(source).create("variables", {"key": "added", "value": "later"})

    def add_outside_scope(self, source: str) -> None:
        self.gcs.bucket(self._bucket(source)).blob("logs/run.log").upload_from_string(b"not backed up")

    def new_target(self, source: str) -> str:
        return self._environment({})

    def part_options(self, parts: list[str]) -> dict[str, Any]:
        """Backup options that take only `parts`."""
        return {"parts": parts}

    def copy_files(self, source: str, bucket_url: str) -> None:
        """Put the environment's DAG bucket files, as they are, into the bucket `bucket_url`."""
        bucket = self.gcs.create_bucket(bucket_url.removeprefix("gs://"))
        for blob in self.gcs.list_blobs(self._bucket(source)):
            bucket.blob(blob.name).upload_from_string(blob.download_as_bytes())

    def expire_outside_data(self, manifest: Any) -> None:
        """A snapshot's files deleted from its bucket (its lifecycle rules, or a person)."""
        import json

        (entry,) = [e for e in manifest.entries if e.name == "composer/snapshot.json"]
        saved = self.gcs.bucket(self.settings.backup_bucket).blob(entry.stored_key).download_as_bytes()
        path = json.loads(saved)["snapshot_path"]
        bucket, _, prefix = path.removeprefix("gs://").partition("/")
        gone = list(self.gcs.list_blobs(bucket, prefix=prefix + "/"))
        assert gone, f"no files under the snapshot path {path}"
        for blob in gone:
            blob.delete()

    def gone(self, target: str) -> bool:
        return self.gcs.lookup_bucket(target.removeprefix("gs://")) is None

    def stop(self) -> None:
        for airflow in self.airflows.values():
            airflow.stop()


def make(request: pytest.FixtureRequest, gcs: Any, bq: Any, settings: Any) -> Iterator[ComposerSubject]:
    from tasks.components.composer.component import ComposerSettings

    request.getfixturevalue("composer_servers")
    secrets = request.getfixturevalue("airflow_secrets")
    settings.composer = ComposerSettings(
        airflow_auth_block=secrets["auth"], encryption_key_block=secrets["key"]
    )
    found = ComposerSubject(gcs, settings)
    yield found
    found.stop()
