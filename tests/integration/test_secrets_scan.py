"""Secrets never reach logs, artifacts or manifests.

Settings are saved with a credentials-bearing notification block (a custom webhook whose token sits
in its secrets and is used in a header and the URL) and a Prefect Secret block exists beside them.
Then the flows run for real, including a failing one whose hook really posts through the webhook,
and every log line (read back from the Prefect API, and every record logged in this process),
every artifact, every flow-run state message and every object in the backup bucket is searched
for the secret values: zero hits. Other components add their flows to `RUNS` as they land.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from backstop.cli import main
from backstop.platform import free_port
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
    """Log messages, artifacts and final state messages of the flow runs, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
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
            texts.append(json.dumps(run.model_dump(mode="json")))
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
        validate_gcs(bucket=source, settings_block=secret_settings, return_state=True),
        restore_gcs(
            source, target_bucket=unique("secretrestored"), settings_block=secret_settings, return_state=True
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
