"""Cloud Composer component against real client libraries and local servers.

The Composer API is the local gRPC server driven by the real `EnvironmentsClient`; Airflow is the
local REST server (same answers as Airflow 2.10.5); buckets live in fake-gcs-server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.core.errors import (
    ConfigError,
    Conflict,
    NotFound,
    PermissionDenied,
    Unavailable,
    ValidationFailed,
)
from backstop.core.secretbox import new_key
from localdev.servers.airflow_server import AirflowServer
from localdev.servers.composer_server import ComposerServer
from tasks.catalog import index
from tasks.components.composer.airflow import AirflowApi
from tests.conftest import unique

pytestmark = pytest.mark.integration

PARENT = "projects/backstop-demo/locations/europe-west1"
# A venv with apache-airflow 2.x (e.g. `python3 -m venv V && V/bin/pip install apache-airflow==2.10.5`, ~30 s):
# when set, the metadata round trip and the DagBag check also run against a real Airflow webserver.
AIRFLOW_VENV = os.environ.get("BACKSTOP_AIRFLOW_VENV", "")
SECRETS = ("var-SECRET-1", "pw-SECRET-2", "tok-SECRET-3", "env-SECRET-4", "smtp-SECRET-5")


@pytest.fixture(scope="module")
def airflows() -> Iterator[tuple[AirflowServer, AirflowServer]]:
    first, second = AirflowServer().start(), AirflowServer().start()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def composer_api(platform: Any) -> Iterator[ComposerServer]:
    server = ComposerServer().start()
    saved = os.environ.get("COMPOSER_EMULATOR_HOST")
    os.environ["COMPOSER_EMULATOR_HOST"] = server.target
    yield server
    if saved is None:
        os.environ.pop("COMPOSER_EMULATOR_HOST", None)
    else:
        os.environ["COMPOSER_EMULATOR_HOST"] = saved
    server.stop()


@pytest.fixture(scope="module")
def secret_blocks(prefect_harness: None) -> dict[str, str]:
    from prefect.blocks.system import Secret

    names = {"auth": unique("airflow-auth"), "key": unique("composer-key")}
    Secret(value="admin:admin").save(names["auth"])
    Secret(value=new_key()).save(names["key"])
    return names


def make_environment(
    gcs: Any, airflow: AirflowServer, files: dict[str, bytes], packages: dict[str, str] | None = None
) -> str:
    """A Composer environment with its own bucket holding `files`; returns its short name."""
    from google.cloud.orchestration.airflow import service_v1 as composer

    from blocks.clients import composer_client

    short = unique("env")
    bucket = gcs.create_bucket(unique("composer"))
    for name, data in files.items():
        bucket.blob(name).upload_from_string(data)
    software = composer.SoftwareConfig(
        pypi_packages=packages or {"pandas": "==2.2.3"},
        env_variables={"STAGE": "prod", "API_TOKEN": SECRETS[3]},
        airflow_config_overrides={"smtp-smtp_password": SECRETS[4], "core-parallelism": "32"},
    )
    config = composer.EnvironmentConfig(
        dag_gcs_prefix=f"gs://{bucket.name}/dags",
        airflow_uri=airflow.url.removesuffix("/api/v1"),
        software_config=software,
    )
    env = composer.Environment(name=f"{PARENT}/environments/{short}", config=config)
    composer_client().create_environment(parent=PARENT, environment=env, timeout=10).result(timeout=10)
    return short


def seed_airflow(airflow: AirflowServer) -> AirflowApi:
    api = AirflowApi(airflow.url, "admin", "admin")
    api.create("variables", {"key": "stage", "value": "prod"})
    api.create("variables", {"key": "db_password", "value": SECRETS[0]})
    for i in range(105):  # more than one page
        api.create("variables", {"key": f"v{i:03d}", "value": str(i)})
    extra = json.dumps({"token": SECRETS[2], "region": "eu"})
    api.create(
        "connections",
        {
            "connection_id": "warehouse",
            "conn_type": "postgres",
            "host": "db",
            "port": 5432,
            "login": "etl",
            "password": SECRETS[1],
            "extra": extra,
        },
    )
    api.create("pools", {"name": "etl", "slots": 3, "description": "ETL"})
    return api


@pytest.fixture
def configured(settings: Any, secret_blocks: dict[str, str], composer_api: ComposerServer) -> Any:
    from tasks.components.composer.component import ComposerSettings

    settings.composer = ComposerSettings(
        environments=[f"{PARENT}/environments/placeholder"],
        airflow_auth_block=secret_blocks["auth"],
        encryption_key_block=secret_blocks["key"],
    )
    return settings


DAGS = {
    "dags/etl.py": b"from airflow import DAG\n\nprint('etl')\n",
    "dags/sql/report.sql": b"select 1\n",
    "plugins/helpers.py": b"def helper():\n    return 1\n",
    "data/lookup.csv": b"a,b\n1,2\n",
}


def all_stored_bytes(gcs: Any, bucket: str) -> bytes:
    return b"\n".join(b.download_as_bytes() for b in gcs.list_blobs(bucket))


def test_round_trip_into_an_empty_environment(gcs: Any, store: Any, configured: Any, airflows: Any) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")

    first, second = airflows
    seed_airflow(first)
    source = make_environment(gcs, first, DAGS)
    target = make_environment(gcs, second, {})

    manifest = COMPONENT.backup(configured, store, source)
    assert manifest.source_state["counts"] == {"dag_files": 1, "variables": 107, "connections": 1, "pools": 2}
    checked = COMPONENT.validate(configured, store, manifest, 100)
    assert checked.status == "validated"

    # No secret is stored in plain text anywhere in the backup bucket (data, manifest, markers).
    stored = all_stored_bytes(gcs, configured.backup_bucket)
    assert [s for s in SECRETS if s.encode() in stored] == []

    plan = COMPONENT.restore(configured, store, checked, target=target, dry_run=True)
    assert plan.created == 4 + 107 + 1 + 1 and not AirflowApi(second.url, "admin", "admin").list(
        "connections"
    )

    report = COMPONENT.restore(configured, store, checked, target=target)
    api = AirflowApi(second.url, "admin", "admin")
    assert api.get("variables", "db_password")["value"] == SECRETS[0]
    assert len(api.list("variables")) == 107
    conn = api.get("connections", "warehouse")
    assert (conn["host"], conn["port"], conn["login"]) == ("db", 5432, "etl")
    assert json.loads(conn["extra"]) == {"region": "eu"}  # Airflow masked the token: never written as "***"
    assert any("token" in a.get("why", "") and a["name"] == "connections/warehouse" for a in report.actions)
    assert [s for s in SECRETS if s in json.dumps(report.actions + plan.actions)] == []
    assert api.get("pools", "etl")["slots"] == 3
    restored = COMPONENT.check_restored(configured, store, checked, target)
    assert restored == []
    env_bucket = _bucket_of(target)
    for name, data in DAGS.items():
        assert gcs.bucket(env_bucket).blob(name).download_as_bytes() == data

    # A changed DAG file is not overwritten unless asked; metadata is updated in place.
    gcs.bucket(env_bucket).blob("dags/etl.py").upload_from_string(b"changed = True\n")
    with pytest.raises(Conflict, match="dags/etl.py"):
        COMPONENT.restore(configured, store, checked, target=target, only=["dags"])
    again = COMPONENT.restore(configured, store, checked, target=target, overwrite=True)
    assert (
        again.overwritten == 1
        and gcs.bucket(env_bucket).blob("dags/etl.py").download_as_bytes() == DAGS["dags/etl.py"]
    )


def test_dag_files_restore_alone_by_name_folder_or_glob(
    gcs: Any, store: Any, configured: Any, airflows: Any
) -> None:
    """`only` may name files of the environment's bucket instead of whole parts: those come back
    and nothing else is touched; a name the backup does not hold is refused, nothing restored."""
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")
    source = make_environment(gcs, airflows[0], DAGS)
    manifest = COMPONENT.validate(configured, store, COMPONENT.backup(configured, store, source), 100)
    bucket = gcs.bucket(_bucket_of(source))
    bucket.blob("dags/etl.py").upload_from_string(b"broken = True\n")
    bucket.blob("plugins/helpers.py").upload_from_string(b"changed = True\n")
    bucket.blob("dags/sql/report.sql").delete()
    bucket.blob("dags/added.py").upload_from_string(b"added = True\n")

    def held(name: str) -> bytes | None:
        blob = bucket.blob(name)
        return blob.download_as_bytes() if blob.exists() else None

    with pytest.raises(NotFound, match=f"no file in backup {manifest.backup_id} matches 'dags/nothing.py'"):
        COMPONENT.restore(
            configured, store, manifest, only=["dags/etl.py", "dags/nothing.py"], overwrite=True, yes=True
        )
    assert held("dags/etl.py") == b"broken = True\n"  # refused before anything was written

    one = COMPONENT.restore(configured, store, manifest, only=["dags/etl.py"], overwrite=True, yes=True)
    assert [(a["name"], a["change"]) for a in one.actions] == [("dags/etl.py", "replace")]
    assert held("dags/etl.py") == DAGS["dags/etl.py"]
    assert held("plugins/helpers.py") == b"changed = True\n" and held("dags/sql/report.sql") is None

    folder = COMPONENT.restore(configured, store, manifest, only=["dags/sql/"])
    assert folder.created == 1 and held("dags/sql/report.sql") == DAGS["dags/sql/report.sql"]

    # exact within a glob: what was added under it goes, the plugin outside it stays as it is
    exact = COMPONENT.restore(
        configured, store, manifest, only=["dags/*.py"], overwrite=True, exact=True, yes=True
    )
    assert [(a["name"], a["change"]) for a in exact.actions if a["change"] != "unchanged"] == [
        ("dags/added.py", "delete")
    ]
    assert held("dags/added.py") is None and held("plugins/helpers.py") == b"changed = True\n"


def _bucket_of(short: str) -> str:
    from blocks.clients import composer_client

    env = composer_client().get_environment(name=f"{PARENT}/environments/{short}", timeout=10)
    return str(env.config.dag_gcs_prefix.removeprefix("gs://").split("/")[0])


def test_reference_mode_stores_no_values(gcs: Any, store: Any, configured: Any, airflows: Any) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")

    configured.composer = configured.composer.model_copy(
        update={"secrets_mode": "reference", "encryption_key_block": None}
    )
    own = AirflowServer().start()  # seeded here: the test does not depend on another having run
    seed_airflow(own)
    source = make_environment(gcs, own, {})
    manifest = COMPONENT.backup(configured, store, source, parts=["metadata", "config"])
    stored = all_stored_bytes(gcs, configured.backup_bucket)
    assert b"$secret_ref" in stored and b"$encrypted" not in stored
    assert [s for s in SECRETS if s.encode() in stored] == []
    target = make_environment(gcs, airflows[1], {})
    report = COMPONENT.restore(configured, store, manifest, target=target, only=["metadata"], dry_run=True)
    assert any(
        "reference" in a.get("why", "") for a in report.actions if a["name"] == "variables/db_password"
    )
    with pytest.raises(NotFound, match="holds no snapshot, dags part"):
        COMPONENT.restore(configured, store, manifest, target=target, only=["snapshot", "dags"])
    own.stop()


def test_unknown_environment_is_named(store: Any, configured: Any) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")

    with pytest.raises(NotFound, match=f"{PARENT}/environments/nowhere"):
        COMPONENT.backup(configured, store, "nowhere")
    assert index.list_manifests(store, "composer") == []


def test_airflow_api_errors_are_clear_and_leave_no_backup(
    gcs: Any, store: Any, configured: Any, airflows: Any
) -> None:
    from prefect.blocks.system import Secret

    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")

    source = make_environment(gcs, airflows[0], {})
    airflows[0].fail_next(500)
    with pytest.raises(Unavailable, match=r"Airflow API GET .*/api/v1/variables: 500"):
        COMPONENT.backup(configured, store, source, parts=["metadata"])
    wrong = unique("airflow-wrong")
    Secret(value="admin:wrong").save(wrong)
    configured.composer = configured.composer.model_copy(update={"airflow_auth_block": wrong})
    with pytest.raises(PermissionDenied, match=rf"401 Unauthorized .*{wrong}"):
        COMPONENT.backup(configured, store, source, parts=["metadata"])
    assert index.list_manifests(store, "composer") == []
    configured.composer = configured.composer.model_copy(update={"encryption_key_block": "no-such-key"})
    with pytest.raises(ConfigError, match="secret/no-such-key"):
        COMPONENT.backup(configured, store, source, parts=["metadata"])


def test_validate_names_a_dag_with_a_syntax_error(
    gcs: Any, store: Any, configured: Any, airflows: Any
) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")

    source = make_environment(
        gcs, airflows[0], {"dags/good.py": b"x = 1\n", "dags/broken.py": b"x = 1\ndef f(:\n"}
    )
    manifest = COMPONENT.backup(configured, store, source, parts=["dags"])
    with pytest.raises(ValidationFailed, match=r"DAG file dags/broken.py line 2"):
        COMPONENT.validate(configured, store, manifest, 0)


def test_config_diff_and_snapshot_load(gcs: Any, store: Any, configured: Any, airflows: Any) -> None:
    from blocks.clients import composer_client
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")

    source = make_environment(gcs, airflows[0], {}, packages={"pandas": "==2.2.3"})
    manifest = COMPONENT.backup(configured, store, source, parts=["config"], snapshot=True)
    client = composer_client()
    name = f"{PARENT}/environments/{source}"
    env = client.get_environment(name=name, timeout=10)
    env.config.software_config.pypi_packages["numpy"] = "==2.1.0"
    env.config.software_config.env_variables["STAGE"] = "test"
    mask = {"paths": ["config.software_config.pypi_packages", "config.software_config.env_variables"]}
    client.update_environment(name=name, environment=env, update_mask=mask, timeout=10).result(timeout=10)

    report = COMPONENT.restore(configured, store, manifest, only=["config"])
    diff = {a["field"]: (a["backup"], a["current"]) for a in report.actions if a["part"] == "config"}
    assert diff == {
        "software_config.pypi_packages.numpy": (None, "==2.1.0"),
        "software_config.env_variables.STAGE": ("prod", "test"),
    }
    assert (
        client.get_environment(name=name, timeout=10).config.software_config.pypi_packages["numpy"]
        == "==2.1.0"
    )

    with pytest.raises(Conflict, match="overwrite was not asked"):  # loading a snapshot replaces state
        COMPONENT.restore(configured, store, manifest, only=["snapshot"])
    report = COMPONENT.restore(configured, store, manifest, only=["snapshot"], overwrite=True, yes=True)
    assert report.approval.startswith("approved")
    assert dict(client.get_environment(name=name, timeout=10).config.software_config.pypi_packages) == {
        "pandas": "==2.2.3"
    }


def test_flows_and_cli(gcs: Any, composer_api: Any, saved_settings: str, airflows: Any, capsys: Any) -> None:
    from backstop_cli.main import main
    from flows.composer import backup_composer, restore_composer, validate_composer

    # Full names: the saved settings block has no composer section yet (BackstopSettings.composer).
    source = f"{PARENT}/environments/" + make_environment(gcs, airflows[0], {"dags/flow.py": b"x = 1\n"})
    target = f"{PARENT}/environments/" + make_environment(gcs, airflows[1], {})
    rows = backup_composer([source], {"parts": ["dags"]}, settings_block=saved_settings)
    assert rows[0]["status"] == "validated" and rows[0]["objects"] == 1 and rows[0]["dag_files"] == 1
    assert validate_composer(source=source, settings_block=saved_settings)[0]["status"] == "validated"

    report = restore_composer(source, target=target, only=["dags"], settings_block=saved_settings)
    assert report["created"] == 1
    assert (
        gcs.bucket(_bucket_of(target.rsplit("/", 1)[-1])).blob("dags/flow.py").download_as_bytes()
        == b"x = 1\n"
    )

    # A later backup of another part does not hide the DAGs: restore takes the latest backup holding them.
    from blocks.settings import load_settings

    with_references = load_settings(saved_settings)
    with_references.composer.secrets_mode = "reference"
    with_references.save(saved_settings, overwrite=True)
    assert (
        backup_composer([source], {"parts": ["config"]}, settings_block=saved_settings)[0]["status"]
        == "validated"
    )
    again = restore_composer(
        source, target=target, only=["dags"], dry_run=True, settings_block=saved_settings
    )
    assert again["backup_id"] == rows[0]["backup_id"] and again["unchanged"] == 1
    # one DAG file through the restore point: the backup holding the dags part supplies it
    target_bucket = gcs.bucket(_bucket_of(target.rsplit("/", 1)[-1]))
    target_bucket.blob("dags/flow.py").upload_from_string(b"broken\n")
    one = restore_composer(
        source, target=target, only=["dags/flow.py"], overwrite=True, settings_block=saved_settings
    )
    assert one["backup_id"] == rows[0]["backup_id"] and one["overwritten"] == 1
    assert target_bucket.blob("dags/flow.py").download_as_bytes() == b"x = 1\n"

    code = main(
        [
            "--settings",
            saved_settings,
            "restore",
            "composer",
            "--environment",
            source,
            "--target",
            target,
            "--part",
            "dags",
            "--dry-run",
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == 1


class RealAirflow:
    """A real Airflow 2 webserver on SQLite (basic auth, admin/admin) in its own AIRFLOW_HOME."""

    def __init__(self, home: Path) -> None:
        from localdev.platform import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.env = os.environ | {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth",
            "AIRFLOW__WEBSERVER__SECRET_KEY": "backstop-tests",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "webserver.log"
        home.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        bin_ = Path(AIRFLOW_VENV, "bin", "airflow")
        subprocess.run([bin_, "db", "migrate"], env=self.env, capture_output=True, check=True, timeout=120)
        subprocess.run(
            [
                bin_,
                "users",
                "create",
                "-u",
                "admin",
                "-p",
                "admin",
                "-r",
                "Admin",
                "-f",
                "a",
                "-l",
                "b",
                "-e",
                "admin@example.com",
            ],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=120,
        )
        self.process = subprocess.Popen(
            [bin_, "webserver", "--hostname", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        request = urllib.request.Request(
            f"{self.url}/pools", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"Airflow webserver did not answer: {self.log.read_text()[-500:]}")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def real_airflows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealAirflow, RealAirflow]]:
    if not AIRFLOW_VENV or not Path(AIRFLOW_VENV, "bin", "airflow").exists():
        pytest.skip("BACKSTOP_AIRFLOW_VENV does not name a venv with apache-airflow")
    root = tmp_path_factory.mktemp("airflow")
    pair = (RealAirflow(root / "source"), RealAirflow(root / "target"))
    errors: list[BaseException] = []

    def start(airflow: RealAirflow) -> None:
        try:
            airflow.start()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(a,)) for a in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        yield pair
    finally:
        for airflow in pair:
            airflow.stop()


def test_round_trip_on_real_airflow(gcs: Any, store: Any, configured: Any, real_airflows: Any) -> None:
    """The same metadata round trip against Airflow 2's own webserver, plus the DagBag check."""
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("composer")

    first, second = real_airflows
    seed_airflow(first)
    dag = b"from airflow import DAG\nimport pendulum\nwith DAG('etl', start_date=pendulum.datetime(2024, 1, 1)):\n    pass\n"
    source = make_environment(gcs, first, {"dags/etl.py": dag})
    target = make_environment(gcs, second, {})
    configured.composer = configured.composer.model_copy(
        update={"airflow_python": str(Path(AIRFLOW_VENV, "bin", "python"))}
    )
    manifest = COMPONENT.validate(configured, store, COMPONENT.backup(configured, store, source), 100)
    assert manifest.source_state["counts"] == {"dag_files": 1, "variables": 107, "connections": 1, "pools": 2}
    stored = all_stored_bytes(gcs, configured.backup_bucket)
    assert [s for s in SECRETS if s.encode() in stored] == []

    report = COMPONENT.restore(configured, store, manifest, target=target)
    api = AirflowApi(second.url, "admin", "admin")
    assert api.get("variables", "db_password")["value"] == SECRETS[0]
    assert len(api.list("variables")) == 107 and api.get("pools", "etl")["slots"] == 3
    conn = api.get("connections", "warehouse")
    assert (conn["host"], conn["port"], json.loads(conn["extra"])) == ("db", 5432, {"region": "eu"})
    assert any("token" in a.get("note", "") for a in report.actions if a["name"] == "warehouse")

    broken = make_environment(
        gcs, first, {"dags/uses_missing.py": b"from airflow import DAG\nimport no_such_module_xyz\n"}
    )
    with pytest.raises(
        ValidationFailed, match="dags/uses_missing.py does not load in Airflow: .*no_such_module_xyz"
    ):
        COMPONENT.validate(configured, store, COMPONENT.backup(configured, store, broken, parts=["dags"]), 0)
