"""One subject per registered component: how to make a source with data, read what a source or a
target holds, change it, and name a fresh target. The contract suite (test_contract.py) runs every
promise over every subject; a new component needs one class here and one line in SUBJECTS. A
component with parts (tasks/engine/protocol.py) also gives `split_parts` (how its schedules split
them), `part_options(parts)` and `copy_files(source, scratch)` (tests/contract/test_restore_points.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev.platform import PROJECT, free_port
from tests.conftest import unique

GKE_LOCATION = "us-central1"
# Every promise is held with chunked manifests: any backup of more than two entries is written in
# chunks of two (format 2), so the streaming readers are what the suite exercises.
CHUNK_ENTRIES = "2"


@pytest.fixture(autouse=True)
def chunked_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_CHUNK_ENTRIES", CHUNK_ENTRIES)


COMPOSER_PARENT = "projects/backstop-demo/locations/europe-west1"


class GcsSubject:
    """A bucket; an exact restore's scope is the backed-up prefix data/ (scope_options)."""

    component = "gcs"
    scope_options: dict[str, Any] | None = {"prefixes": ["data/"]}
    plans_honestly = exact_applies = True

    def __init__(self, gcs: Any, settings: Any) -> None:
        self.gcs, self.settings = gcs, settings

    def seed(self) -> str:
        bucket = self.gcs.create_bucket(unique("src"))
        for i in range(6):
            bucket.blob(f"data/part-{i}.csv").upload_from_string(f"id,value\n{i},{i * i}\n".encode())
        bucket.blob("readme.txt").upload_from_string(b"hello")
        return str(bucket.name)

    def state(self, where: str) -> Any:
        bucket = where.removeprefix("gs://")
        return {
            b.name: (b.download_as_bytes(), b.content_type, b.metadata or {})
            for b in self.gcs.list_blobs(bucket)
        }

    def change(self, source: str) -> None:
        self.gcs.bucket(source).blob("readme.txt").upload_from_string(b"changed after the backup")

    def change_one_kind(self, source: str) -> None:
        """Metadata only: the same bytes, another content type and custom metadata."""
        blob = self.gcs.bucket(source).get_blob("data/part-1.csv")
        blob.content_type, blob.metadata = "application/x-changed", {"owner": "someone else"}
        blob.patch()

    def add_in_scope(self, source: str) -> None:
        self.gcs.bucket(source).blob("data/added.csv").upload_from_string(b"id,value\n9,81\n")

    def add_outside_scope(self, source: str) -> None:
        self.gcs.bucket(source).blob("other/notes.txt").upload_from_string(b"not backed up")

    def new_target(self, source: str) -> str:
        return unique("restored")

    def gone(self, target: str) -> bool:
        return self.gcs.lookup_bucket(target.removeprefix("gs://")) is None


class BigQuerySubject:
    """A dataset with one table; an exact restore's scope is the dataset."""

    component = "bigquery"
    scope_options: dict[str, Any] | None = None
    plans_honestly = exact_applies = True

    def __init__(self, bq: Any, settings: Any) -> None:
        self.bq, self.settings = bq, settings

    def seed(self) -> str:
        from google.cloud import bigquery

        dataset = unique("ds").replace("-", "_")
        ds = bigquery.Dataset(f"{PROJECT}.{dataset}")
        ds.labels = {"team": "data"}
        self.bq.create_dataset(ds, timeout=20)
        schema = [bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("name", "STRING")]
        table = self.bq.create_table(bigquery.Table(f"{PROJECT}.{dataset}.people", schema=schema), timeout=20)
        assert (
            self.bq.insert_rows_json(table, [{"id": i, "name": f"n{i}"} for i in range(20)], timeout=20) == []
        )
        return dataset

    def state(self, where: str) -> Any:
        rows = self.bq.query(f"SELECT id, name FROM `{PROJECT}.{where}.people` ORDER BY id").result(
            timeout=30
        )
        tables = sorted(t.table_id for t in self.bq.list_tables(f"{PROJECT}.{where}", timeout=20))
        description = self.bq.get_table(f"{PROJECT}.{where}.people", timeout=20).description
        return tables, [tuple(r.values()) for r in rows], description

    def change(self, source: str) -> None:
        self.bq.query(f"DELETE FROM `{PROJECT}.{source}.people` WHERE id < 5").result(timeout=30)

    def change_one_kind(self, source: str) -> None:
        """Metadata only: the table's description, not a row."""
        table = self.bq.get_table(f"{PROJECT}.{source}.people", timeout=20)
        table.description = "changed after the backup"
        self.bq.update_table(table, ["description"], timeout=20)

    def _table(self, ref: str) -> None:
        from google.cloud import bigquery

        table = self.bq.create_table(
            bigquery.Table(ref, schema=[bigquery.SchemaField("id", "INT64")]), timeout=20
        )
        assert self.bq.insert_rows_json(table, [{"id": 1}], timeout=20) == []

    def add_in_scope(self, source: str) -> None:
        self._table(f"{PROJECT}.{source}.added_later")

    def add_outside_scope(self, source: str) -> None:
        from google.cloud import bigquery

        other = f"{source}_other"
        self.bq.create_dataset(bigquery.Dataset(f"{PROJECT}.{other}"), exists_ok=True, timeout=20)
        self._table(f"{PROJECT}.{other}.added_later")

    def new_target(self, source: str) -> str:
        return unique("target").replace("-", "_")

    def gone(self, target: str) -> bool:
        return not list(d.dataset_id for d in self.bq.list_datasets(timeout=20) if d.dataset_id == target)


class ConfigsSubject:
    """A local directory; an exact restore's scope is the files the source's patterns select
    (secret-looking files and excluded ones are never in it)."""

    component = "configs"
    scope_options: dict[str, Any] | None = None
    plans_honestly = exact_applies = True

    def __init__(self, settings: Any, root: Path) -> None:
        self.settings, self.root = settings, root

    def seed(self) -> str:
        from blocks.components import ConfigSource

        name = unique("cfg")
        path = self.root / name
        (path / "pipelines").mkdir(parents=True)
        (path / "pipelines" / "orders.yaml").write_text("name: orders\nschedule: daily\n")
        (path / "dags").mkdir()
        (path / "dags" / "etl.py").write_text("print('etl')\n")
        (path / "main.tf").write_text('resource "x" "y" {}\n')
        self.settings.configs.sources.append(ConfigSource(name=name, path=str(path)))
        return name

    def _path(self, where: str) -> Path:
        known = {s.name: s.path for s in self.settings.configs.sources}
        return Path(known.get(where, where))

    def state(self, where: str) -> Any:
        root = self._path(where)
        return {
            str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    def change(self, source: str) -> None:
        (self._path(source) / "main.tf").write_text("changed after the backup\n")

    def change_one_kind(self, source: str) -> None:
        """The mode only, not the content."""
        path = self._path(source) / "main.tf"
        path.chmod(0o600 if path.stat().st_mode & 0o777 != 0o600 else 0o640)

    def add_in_scope(self, source: str) -> None:
        (self._path(source) / "pipelines" / "added.yaml").write_text("name: added\n")

    def add_outside_scope(self, source: str) -> None:
        (self._path(source) / ".env").write_text("TOKEN=left out as a secret\n")
        (self._path(source) / ".git").mkdir(exist_ok=True)
        (self._path(source) / ".git" / "HEAD").write_text("excluded by the source's patterns\n")

    def new_target(self, source: str) -> str:
        return str(self.root / unique("restored"))

    def gone(self, target: str) -> bool:
        return not Path(target).exists()


class ComposerSubject:
    """An environment (DAG bucket + Airflow); an exact restore's scope is dags/, plugins/, data/
    and the Airflow variables, connections and pools."""

    component = "composer"
    # The shipped schedules: DAGs and config daily, metadata hourly (prefect.yaml).
    split_parts = [["dags", "config"], ["metadata"]]
    scope_options: dict[str, Any] | None = None
    plans_honestly = exact_applies = True

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
        files = {b.name: b.download_as_bytes() for b in self.gcs.list_blobs(self._bucket(short))}
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

    def gone(self, target: str) -> bool:
        return self.gcs.lookup_bucket(target.removeprefix("gs://")) is None

    def stop(self) -> None:
        for airflow in self.airflows.values():
            airflow.stop()


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


@pytest.fixture(scope="session")
def composer_servers(platform: Any) -> Iterator[None]:
    from localdev.servers.composer_server import ComposerServer

    server = ComposerServer().start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COMPOSER_EMULATOR_HOST", server.target)
        yield
    server.stop()


@pytest.fixture(scope="session")
def gke_server(platform: Any) -> Iterator[Any]:
    from localdev.servers.gke_server import GkeBackupServer

    server = GkeBackupServer(port=free_port(), polls=2, demo=False).start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GKE_BACKUP_EMULATOR_HOST", server.target)
        env.setenv("KUBERNETES_EMULATOR_HOST", server.kube_url)
        yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow_secrets(prefect_harness: None) -> dict[str, str]:
    from prefect.blocks.system import Secret

    from backstop.core.secretbox import new_key

    names = {"auth": unique("airflow-auth"), "key": unique("composer-key")}
    Secret(value="admin:admin").save(names["auth"])
    Secret(value=new_key()).save(names["key"])
    return names


SUBJECTS = ["gcs", "bigquery", "configs", "composer", "gke"]


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest, gcs: Any, bq: Any, settings: Any) -> Iterator[Any]:
    """A fresh subject of one component, its settings pointing at this test's backup buckets."""
    from tasks.engine.protocol import COMPONENTS

    assert sorted(SUBJECTS) == sorted(COMPONENTS), "every registered component needs a contract subject"
    name = request.param
    if name == "gcs":
        yield GcsSubject(gcs, settings)
    elif name == "bigquery":
        yield BigQuerySubject(bq, settings)
    elif name == "configs":
        with tempfile.TemporaryDirectory(prefix="backstop-contract-") as root:
            yield ConfigsSubject(settings, Path(root))
    elif name == "composer":
        from tasks.components.composer.component import ComposerSettings

        request.getfixturevalue("composer_servers")
        secrets = request.getfixturevalue("airflow_secrets")
        settings.composer = ComposerSettings(
            airflow_auth_block=secrets["auth"], encryption_key_block=secrets["key"]
        )
        found = ComposerSubject(gcs, settings)
        yield found
        found.stop()
    else:
        yield GkeSubject(request.getfixturevalue("gke_server"), settings)


def expire_outside_data(subject: Any, manifest: Any) -> None:
    """What the service does when its own retention ends: Backup for GKE deletes the backup after
    the plan's retain_days, BigQuery drops a snapshot table at its expiration."""
    if subject.component == "gke":
        from blocks.clients import gke_backup_client

        name = manifest.source_state["backup_name"]
        gke_backup_client().delete_backup(name=name, timeout=20).result(timeout=30)
    elif subject.component == "bigquery":
        tables = [e.metadata["snapshot_table"] for e in manifest.entries if e.metadata.get("snapshot_table")]
        assert tables, "a snapshot-method backup keeps its table data in snapshot tables"
        for table in tables:
            subject.bq.delete_table(table, timeout=20)
    else:
        raise AssertionError(f"{subject.component} keeps nothing outside the backup bucket")
