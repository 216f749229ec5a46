"""Retention layers agree, against the local Backup for GKE server (real gRPC API) and Cloud Storage:
Backstop sets the GKE plan's retention from its own, and preflight names any layer that would
delete data of a backup Backstop still keeps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localdev.platform import PROJECT, free_port
from tests.conftest import unique
from tests.operations.test_buckets import config_gcs  # noqa: F401  (an emulator that keeps lifecycle rules)

pytestmark = pytest.mark.integration
LOCATION = "us-central1"


@pytest.fixture
def gke_server(monkeypatch: pytest.MonkeyPatch, platform: Any) -> Iterator[Any]:
    from localdev.servers.gke_server import GkeBackupServer

    server = GkeBackupServer(port=free_port(), polls=1, demo=False).start()
    monkeypatch.setenv("GKE_BACKUP_EMULATOR_HOST", server.target)
    yield server
    server.stop()


def with_cluster(settings: Any, server: Any, **item: Any) -> str:
    from blocks.components import GkeSettings

    name = unique("c")
    server.add_cluster(f"projects/{PROJECT}/locations/{LOCATION}/clusters/{name}", {"shop": {"resources": 3}})
    settings.gke = GkeSettings(
        project=PROJECT, location=LOCATION, poll_seconds=0.01,
        clusters=[{"cluster": name, "include_secrets": False} | item],
    )  # fmt: skip
    return name


def layer_findings(settings: Any, gcs: Any) -> list[dict[str, str]]:
    from tasks.operations.retention_layers import retention_findings

    return [f.as_dict() for f in retention_findings(settings, gcs)]


def test_gke_plan_keeps_backups_as_long_as_backstop_and_preflight_names_a_plan_that_does_not(
    settings: Any, gcs: Any, gke_server: Any
) -> None:
    from google.protobuf import field_mask_pb2

    from blocks.clients import gke_backup_client
    from tasks.components.gke.api import ensure_plan

    with_cluster(settings, gke_server)
    (item,) = settings.gke.clusters
    created = ensure_plan(settings, settings.gke, item)
    client = gke_backup_client()
    plan = client.get_backup_plan(name=created["plan"], timeout=10)
    assert plan.retention_policy.backup_retain_days == 12 * 31 + 1  # the default keeps 12 monthly backups
    (finding,) = layer_findings(settings, gcs)
    assert finding["level"] == "ok" and "up to 373 days" in finding["message"]

    # Someone shortens the plan by hand: preflight names it; the next backup's ensure_plan reverts it.
    plan.retention_policy.backup_retain_days = 30
    mask = field_mask_pb2.FieldMask(paths=["retention_policy.backup_retain_days"])
    client.update_backup_plan(backup_plan=plan, update_mask=mask, timeout=10).result(timeout=10)
    (finding,) = layer_findings(settings, gcs)
    assert finding["level"] == "error"
    assert "deletes backups after 30 days" in finding["message"] and "up to 373 days" in finding["message"]
    assert ensure_plan(settings, settings.gke, item)["action"] == "updated"
    assert layer_findings(settings, gcs)[0]["level"] == "ok"

    # A shorter retain_days in the settings is named before any plan is touched.
    settings.retention_overrides = {"gke": settings.retention.model_copy(update={"keep_monthly": 0})}
    with_cluster(settings, gke_server, retain_days=14)
    (finding,) = layer_findings(settings, gcs)
    assert finding["level"] == "error" and "retain_days is 14" in finding["message"]
    assert "up to 29 days" in finding["message"]  # keep_weekly 4 is then the longest rule


def test_a_lifecycle_rule_deleting_composer_snapshots_early_is_named(
    settings: Any,
    config_gcs: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    gcs = config_gcs
    bucket = gcs.create_bucket(unique("snapshots"))
    settings.composer.snapshot = True
    settings.composer.environments = ["projects/p/locations/l/environments/analytics"]
    settings.composer.snapshot_location = f"gs://{bucket.name}/composer"
    (finding,) = layer_findings(settings, gcs)
    assert finding["level"] == "ok"

    bucket.add_lifecycle_delete_rule(age=30)
    bucket.patch()
    (finding,) = layer_findings(settings, gcs)
    assert finding["level"] == "error" and "after 30 days" in finding["message"]


def test_backstop_preflight_names_the_mismatch(
    settings: Any, gke_server: Any, prefect_harness: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from backstop_cli.main import main

    cluster = with_cluster(settings, gke_server, retain_days=30)
    name = unique("settings")
    settings.save(name, overwrite=True)
    assert main(["--settings", name, "preflight", "--json"]) == 1  # a red finding
    findings = [f for f in json.loads(capsys.readouterr().out) if f["check"] == "retention layers"]
    assert [f["level"] for f in findings] == ["error"]
    assert (
        "retain_days is 30" in findings[0]["message"]
        and f"backups of {cluster} up to 373 days" in findings[0]["message"]
    )
