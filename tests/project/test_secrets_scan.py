"""Secrets never reach logs, artifacts or manifests.

Settings are saved with a credentials-bearing notification block (a custom webhook whose token sits
in its secrets and is used in a header and the URL) and a Prefect Secret block exists beside them.
Then the flows run for real, including a failing one whose hook really posts through the webhook,
and every log line (read back from the Prefect API, and every record logged in this process),
every artifact, every flow and task run (parameters, state messages) and every object in the
backup bucket (manifests included, the configs archive unpacked) is searched for the secret values:
zero hits. Cloud Storage runs in the first test; Composer (Airflow auth and encryption key in Secret
blocks, an Airflow connection password, a secret `extra` key and a secret variable, secret env
variables), configuration files (a `.env` and private keys on disk) and BigQuery in the second.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from backstop_cli.main import main
from localdev.platform import free_port
from tasks.catalog import index
from tasks.storage.bucket import open_store
from tests.conftest import unique

pytestmark = [pytest.mark.integration, pytest.mark.flow]

TOKEN = "tok-" + "s3cr3t-5f1d2c9a8b7e"  # split so a grep of this file is not a hit in logs
SECRET_VALUE = "pw-" + "0ddba11-c0ffee-42"


class Receiver:
    """A local webhook that keeps the headers and path of each POST (to prove the token was used)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append(f"{self.path} {self.headers.get('Authorization')}")
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        # A formatter marks it a user handler: Prefect's logging setup then leaves the root's handlers alone.
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    local = Receiver()
    yield local
    local.server.shutdown()
    local.server.server_close()


@pytest.fixture
def process_logs() -> Iterator[Collect]:
    handler = Collect()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture
def secret_settings(prefect_harness: None, settings: Any, receiver: Receiver) -> str:
    from prefect.blocks.system import Secret

    from blocks.notifications import save_webhook_block

    Secret(value=SECRET_VALUE).save(unique("db-password"), overwrite=True)
    settings.notify_block = save_webhook_block(
        unique("hook"),
        f"http://127.0.0.1:{receiver.port}/hook?key={{{{token}}}}",
        headers={"Authorization": "Bearer {{token}}"},
        secrets={"token": TOKEN},
    )
    name = unique("settings")
    settings.save(name, overwrite=True)
    return name


def everything_recorded(flow_run_ids: list[Any]) -> list[str]:
    """Log messages, artifacts, flow runs (parameters, states) and task runs, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    texts: list[str] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)), offset=offset
            )
            texts += [log.message for log in page]
            offset += len(page)
            if len(page) < 200:
                break
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids))
        )
        texts += [json.dumps(a.model_dump(mode="json")) for a in artifacts]
        for run_id in flow_run_ids:
            run = client.read_flow_run(run_id)
            texts.append(json.dumps(run.model_dump(mode="json")))  # parameters, state message
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
        )
        texts += [json.dumps(t.model_dump(mode="json")) for t in task_runs]
    return texts


def test_gcs_flows_and_cli_leak_no_secret(
    gcs: Any, settings: Any, secret_settings: str, receiver: Receiver, process_logs: Collect,
    capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from flows.gcs import backup_gcs, restore_gcs, validate_gcs

    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))
    source = unique("secretsrc")
    bucket = gcs.create_bucket(source)
    for i in range(12):
        bucket.blob(f"p/o-{i}.txt").upload_from_string(f"object {i}".encode())

    states = [
        backup_gcs([source], sample_percent=100, settings_block=secret_settings, return_state=True),
        validate_gcs(source=source, settings_block=secret_settings, return_state=True),
        restore_gcs(
            source, target=unique("secretrestored"), settings_block=secret_settings, return_state=True
        ),
        restore_gcs(source, dry_run=True, settings_block=secret_settings, return_state=True),
        backup_gcs(
            ["no-such-bucket-secrets"], settings_block=secret_settings, return_state=True
        ),  # fails: hook posts
    ]
    assert [s.is_completed() for s in states] == [True, True, True, True, False]
    assert main(["--settings", secret_settings, "backup", "gcs", "--bucket", source]) == 0
    assert main(["--settings", secret_settings, "restore", "gcs", "--bucket", "no-such-bucket-secrets"]) == 2
    printed = capsys.readouterr()

    assert any(TOKEN in seen for seen in receiver.seen), (
        "the failure hook did not use the secret-bearing block"
    )
    texts = everything_recorded([s.state_details.flow_run_id for s in states])
    texts += process_logs.lines + [printed.out, printed.err]
    texts += [
        blob.download_as_text() for blob in gcs.list_blobs(settings.backup_bucket)
    ]  # manifests, markers
    assert len(texts) > 20 and any(source in t for t in texts)  # the search really covered the runs
    hits = [t[:200] for t in texts if TOKEN in t or SECRET_VALUE in t]
    assert hits == []


# --- Composer, configuration files and BigQuery -------------------------------------------------

PARENT = "projects/backstop-demo/locations/europe-west1"
AIRFLOW_PASSWORD = "af-" + "pa55-7e1b9c04"
CONN_PASSWORD = "cp-" + "9a8b7c6d-warehouse"
EXTRA_TOKEN = "xt-" + "4c4c-d00d-feed"
VARIABLE_SECRET = "vs-" + "b16b00b5-cafe"
ENV_SECRET = "ev-" + "a11ce-b0b-77"
SMTP_SECRET = "sm-" + "fee1dead-31"
TARGET_ENV_SECRET = "te-" + "5eed-0f-7a96e7"  # the target's own value: a config diff must not show it
DOTENV_SECRET = "de-" + "deadbeef-0e1f"
KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + "BKcwggSjAgEAAoIBAQC7bogus"


@pytest.fixture
def airflow_pair() -> Iterator[tuple[Any, Any]]:
    from localdev.servers.airflow_server import AirflowServer

    pair = (
        AirflowServer(user="svc-backup", password=AIRFLOW_PASSWORD).start(),
        AirflowServer(user="svc-backup", password=AIRFLOW_PASSWORD).start(),
    )
    yield pair
    for server in pair:
        server.stop()


@pytest.fixture
def composer_api(platform: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from localdev.servers.composer_server import ComposerServer

    server = ComposerServer().start()
    monkeypatch.setenv("COMPOSER_EMULATOR_HOST", server.target)
    yield server
    server.stop()


def make_environment(gcs: Any, airflow: Any, files: dict[str, bytes], env_secret: str) -> str:
    """A Composer environment (own bucket holding `files`, secret env variable and config override)."""
    from google.cloud.orchestration.airflow import service_v1 as composer

    from blocks.clients import composer_client

    name = f"{PARENT}/environments/{unique('env')}"
    bucket = gcs.create_bucket(unique("composer"))
    for path, data in files.items():
        bucket.blob(path).upload_from_string(data)
    software = composer.SoftwareConfig(
        pypi_packages={"pandas": "==2.2.3"},
        env_variables={"STAGE": "prod", "API_TOKEN": env_secret},
        airflow_config_overrides={"smtp-smtp_password": SMTP_SECRET},
    )
    config = composer.EnvironmentConfig(
        dag_gcs_prefix=f"gs://{bucket.name}/dags",
        airflow_uri=airflow.url.removesuffix("/api/v1"),
        software_config=software,
    )
    env = composer.Environment(name=name, config=config)
    composer_client().create_environment(parent=PARENT, environment=env, timeout=10).result(timeout=10)
    return name


def seed_airflow(airflow: Any) -> None:
    from tasks.components.composer.airflow import AirflowApi

    api = AirflowApi(airflow.url, "svc-backup", AIRFLOW_PASSWORD)
    api.create("variables", {"key": "stage", "value": "prod"})
    api.create("variables", {"key": "db_password", "value": VARIABLE_SECRET})
    api.create(
        "connections",
        {
            "connection_id": "warehouse",
            "conn_type": "postgres",
            "host": "db",
            "login": "etl",
            "password": CONN_PASSWORD,
            "extra": json.dumps({"api_token": EXTRA_TOKEN, "region": "eu"}),
        },
    )


def failing_airflow_backup(airflow: Any, run: dict[str, Any]) -> Any:
    from flows.composer import backup_composer

    airflow.fail_next(500, times=5)  # more than the unit's retry: the backup fails
    return backup_composer(options={"parts": ["metadata"]}, **run)


def readable(data: bytes) -> str:
    """Object bytes as searchable text: gzip (the configs archive) is unpacked first (tar is plain)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("latin-1")


def config_dir(root: Any) -> Any:
    """Plain configuration files plus a `.env`, a `.pem` and a private key under an innocent name."""
    pem = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"
    files = {
        "pipelines/daily.yaml": "schedule: daily\nowner: data\n",
        "app/settings.json": '{"stage": "prod"}\n',
        ".env": f"STAGE=prod\nDB_PASSWORD={DOTENV_SECRET}\n",
        "keys/deploy.pem": pem,
        "notes/signing.txt": pem,
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def test_composer_configs_and_bigquery_flows_leak_no_secret(
    gcs: Any, bq: Any, settings: Any, secret_settings: str, receiver: Receiver, process_logs: Collect,
    airflow_pair: Any, composer_api: Any, tmp_path: Any,
) -> None:  # fmt: skip
    from google.cloud import bigquery
    from prefect.blocks.system import Secret

    from backstop.core.secretbox import new_key
    from blocks.components import ComposerSettings
    from blocks.settings import load_settings
    from flows.bigquery import backup_bigquery
    from flows.composer import backup_composer, restore_composer, validate_composer
    from flows.configs import backup_configs
    from localdev.platform import PROJECT
    from tasks.components.composer.airflow import AirflowApi

    auth, key = f"svc-backup:{AIRFLOW_PASSWORD}", new_key()
    basic = base64.b64encode(auth.encode()).decode()  # what an Authorization header would carry
    secrets = [TOKEN, SECRET_VALUE, auth, basic, AIRFLOW_PASSWORD, key, CONN_PASSWORD, EXTRA_TOKEN,
               VARIABLE_SECRET, ENV_SECRET, SMTP_SECRET, TARGET_ENV_SECRET, DOTENV_SECRET, KEY_BODY]  # fmt: skip
    auth_block, key_block = unique("airflow-auth"), unique("composer-key")
    Secret(value=auth).save(auth_block)
    Secret(value=key).save(key_block)

    source_airflow, target_airflow = airflow_pair
    seed_airflow(source_airflow)
    source = make_environment(gcs, source_airflow, {"dags/etl.py": b"x = 1\n"}, ENV_SECRET)
    target = make_environment(gcs, target_airflow, {}, TARGET_ENV_SECRET)
    dataset = unique("secrets_ds").replace("-", "_")
    bq.create_dataset(bigquery.Dataset(f"{PROJECT}.{dataset}"), timeout=20)
    table = bq.create_table(
        bigquery.Table(f"{PROJECT}.{dataset}.t", schema=[bigquery.SchemaField("id", "INT64")]), timeout=20
    )
    assert bq.insert_rows_json(table, [{"id": 1}, {"id": 2}], timeout=20) == []

    saved = load_settings(secret_settings)
    saved.composer = ComposerSettings(
        environments=[source], airflow_auth_block=auth_block, encryption_key_block=key_block
    )
    saved.bigquery_datasets = [dataset]
    saved.save(secret_settings, overwrite=True)

    run = {"settings_block": secret_settings, "return_state": True}
    states = [
        backup_composer(**run),
        validate_composer(source=source, **run),
        restore_composer(source, target=target, dry_run=True, **run),
        restore_composer(source, target=target, **run),
        backup_composer([f"{PARENT}/environments/no-such-env"], **run),  # fails: hook posts
        failing_airflow_backup(source_airflow, run),  # fails in the Airflow API call
        backup_configs(["secretcfg"], {"path": str(config_dir(tmp_path / "cfg"))}, **run),
        backup_bigquery(**run),
    ]
    assert [s.is_completed() for s in states] == [True] * 4 + [False, False, True, True]
    results = [s.result() for s in states if s.is_completed()]
    assert results[0][0]["status"] == "validated" and results[0][0]["connections"] == 1
    assert results[3]["created"] >= 4  # the DAG, two variables, the connection
    assert "Airflow API GET" in str(states[5].message) and "500" in str(states[5].message)
    assert results[4][0]["files"] == 2 and results[4][0]["skipped_secrets"] == 3
    bq_backup = index.find(open_store(settings), results[5][0]["backup_id"])
    assert results[5][0]["status"] == "validated" and sum(bq_backup.source_state["tables"].values()) == 2
    assert any(TOKEN in seen for seen in receiver.seen), "the failure hook did not use the webhook block"
    # The secrets really went through the backup (encrypted): the restore put them back into Airflow.
    restored = AirflowApi(target_airflow.url, "svc-backup", AIRFLOW_PASSWORD)
    assert restored.get("variables", "db_password")["value"] == VARIABLE_SECRET

    texts = everything_recorded([s.state_details.flow_run_id for s in states])
    texts += process_logs.lines + [json.dumps(results, default=str)]
    objects = list(gcs.list_blobs(settings.backup_bucket))
    texts += [readable(blob.download_as_bytes()) for blob in objects]
    # The search really covered the runs: every component's backup objects and manifests are in it.
    for prefix in ("composer/", "configs/secretcfg/", f"bigquery/{dataset}/"):
        assert any(b.name.startswith(prefix) and b.name.endswith("manifest.json") for b in objects), prefix
    assert any("left out keys/deploy.pem" in line for line in process_logs.lines)  # this process too
    assert any("keys/deploy.pem" in t for t in texts) and any(dataset in t for t in texts)
    assert any("schedule: daily" in t for t in texts)  # archived file contents are searched too
    hits = [(s[:6], t[max(0, t.find(s) - 120) : t.find(s)]) for t in texts for s in secrets if s in t]
    assert hits == []
    print(
        f"secrets scan: {len(secrets)} values, {len(states)} flow runs, {len(texts)} texts, {len(objects)} objects"
    )
