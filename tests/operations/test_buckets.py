"""Storage tiers and the preflight check on gcp-storage-emulator (it keeps bucket configuration;
fake-gcs-server does not)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from blocks.settings import BackstopSettings, RetentionSettings
from localdev.platform import PROJECT, free_port
from tasks.operations.buckets import TierSettings, ensure_lifecycle, lifecycle_rules, preflight, tier_warnings
from tests.conftest import unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config_gcs() -> Iterator[Any]:
    """A storage client on a private gcp-storage-emulator (started and stopped by this module)."""
    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    exe = shutil.which("gcp-storage-emulator") or os.path.join(
        os.path.dirname(os.sys.executable), "gcp-storage-emulator"
    )
    port = free_port()
    proc = subprocess.Popen(
        [exe, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{endpoint}/storage/v1/b", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("gcp-storage-emulator did not start")
                time.sleep(0.1)
        yield storage.Client(
            project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_settings(client: Any, secondary: bool = True, **extra: Any) -> BackstopSettings:
    primary = client.create_bucket(unique("backups")).name
    second = client.create_bucket(unique("backups-dr")).name if secondary else None
    return BackstopSettings(project=PROJECT, backup_bucket=primary, secondary_bucket=second, **extra)


def test_lifecycle_rules_are_per_component_prefix_with_no_delete_by_default() -> None:
    settings = BackstopSettings(project=PROJECT, backup_bucket="b")
    rules = lifecycle_rules(settings)
    assert {r["action"]["type"] for r in rules} == {"SetStorageClass"}
    gcs_rules = [r for r in rules if "gcs/" in r["condition"]["matchesPrefix"]]
    assert [(r["action"]["storageClass"], r["condition"]["age"]) for r in gcs_rules] == [
        ("NEARLINE", 30),
        ("COLDLINE", 90),
    ]
    assert gcs_rules[0]["condition"]["matchesPrefix"] == ["gcs/", "pool/gcs/"]
    assert gcs_rules[1]["condition"]["matchesStorageClass"] == ["STANDARD", "NEARLINE"]
    assert len(rules) == 2 * 5


def test_ensure_lifecycle_sets_the_rules_once_and_keeps_foreign_rules(config_gcs: Any) -> None:
    bucket = config_gcs.create_bucket(unique("backups"))
    foreign = {"action": {"type": "Delete"}, "condition": {"age": 7, "matchesPrefix": ["tmp/"]}}
    bucket.lifecycle_rules = [foreign]
    bucket.patch()
    rules = lifecycle_rules(BackstopSettings(project=PROJECT, backup_bucket=bucket.name))
    assert ensure_lifecycle(config_gcs, bucket.name, rules) is True
    stored = [dict(r) for r in config_gcs.get_bucket(bucket.name).lifecycle_rules]
    assert stored == [foreign, *rules]
    assert ensure_lifecycle(config_gcs, bucket.name, rules) is False


def test_tier_warnings_flag_windows_inside_a_minimum_storage_duration() -> None:
    ok = BackstopSettings(project=PROJECT, backup_bucket="b")  # daily 7, weekly 4 (28 d), monthly 12 (372 d)
    assert tier_warnings(ok) == []
    risky = BackstopSettings(
        project=PROJECT,
        backup_bucket="b",
        retention_overrides={"gcs": RetentionSettings(keep_daily=45, keep_weekly=0, keep_monthly=0)},
    )
    [warning] = tier_warnings(risky)
    assert "retention gcs" in warning and "keep_daily" in warning and "NEARLINE at 30 days" in warning
    archive = BackstopSettings(
        project=PROJECT, backup_bucket="b", retention=RetentionSettings(keep_monthly=14)
    )
    assert any(
        "ARCHIVE" in w and "keep_monthly" in w
        for w in tier_warnings(archive, TierSettings(archive_after_days=180))
    )


def by_check(findings: list[Any], bucket: str | None = None) -> dict[str, Any]:
    return {f.check: f for f in findings if bucket is None or f.bucket == bucket}


def test_preflight_reports_the_configuration_of_both_buckets(config_gcs: Any) -> None:
    key = "projects/demo/locations/us/keyRings/backstop/cryptoKeys/backups"
    settings = make_settings(config_gcs, kms_key_name=key)
    primary = config_gcs.get_bucket(settings.backup_bucket)
    primary.versioning_enabled = True
    primary.default_kms_key_name = key
    primary.retention_period = 86400
    primary.patch()

    findings = preflight(config_gcs, settings)
    mine = by_check(findings, settings.backup_bucket)
    assert mine["versioning"].level == "ok" and "versioning on" in mine["versioning"].message
    assert mine["soft delete"].level == "ok" and "7 days" in mine["soft delete"].message
    assert "1-day retention policy (not locked)" in mine["retention policy"].message
    assert mine["kms"].level == "ok" and key in mine["kms"].message
    assert "US" in mine["location"].message
    theirs = by_check(findings, settings.secondary_bucket)
    assert theirs["kms"].level == "warning" and "no default KMS key" in theirs["kms"].message
    # the emulator puts every bucket in US: same location as the primary, so no disaster recovery
    assert "same location" in theirs["secondary location"].message


def test_preflight_warns_on_a_locked_retention_policy_where_bigquery_extracts(config_gcs: Any) -> None:
    settings = make_settings(config_gcs, bigquery_method="extract")
    primary = config_gcs.get_bucket(settings.backup_bucket)
    # the emulator has no lockRetentionPolicy call: store the state the real API reports after a lock
    primary._patch_property("retentionPolicy", {"retentionPeriod": "864000", "isLocked": True})
    primary.patch()
    warning = by_check(preflight(config_gcs, settings), settings.backup_bucket)["bigquery extract"]
    assert (
        warning.level == "warning" and "locked" in warning.message and "never be removed" in warning.message
    )


def test_preflight_warns_without_a_secondary_and_errors_on_a_missing_bucket(config_gcs: Any) -> None:
    settings = make_settings(config_gcs, secondary=False)
    findings = preflight(config_gcs, settings)
    assert any(f.check == "secondary" and f.level == "warning" for f in findings)
    gone = BackstopSettings(project=PROJECT, backup_bucket=unique("missing"), secondary_bucket=None)
    [error] = [f for f in preflight(config_gcs, gone) if f.level == "error"]
    assert "not found" in error.message and gone.backup_bucket in error.message


@pytest.mark.flow
def test_preflight_and_tiers_flows_and_cli(
    config_gcs: Any, prefect_harness: None, capsys: Any, monkeypatch: Any
) -> None:
    import json

    from backstop_cli.main import main

    settings = make_settings(config_gcs)
    name = unique("settings")
    settings.save(name, overwrite=True)
    # the flows build their client from blocks.clients: point the emulator variable at this module's server
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", config_gcs._connection.API_BASE_URL)
    assert main(["--settings", name, "tiers", "--json"]) == 0
    tiers = json.loads(capsys.readouterr().out)
    assert tiers["changed"] == {settings.backup_bucket: True, settings.secondary_bucket: True}
    assert [dict(r) for r in config_gcs.get_bucket(settings.backup_bucket).lifecycle_rules] == tiers["rules"]
    # this emulator creates every bucket in US: a secondary in the primary's location is a red finding
    assert main(["--settings", name, "preflight"]) == 1
    text = capsys.readouterr().out
    assert "same location" in text and "soft delete" in text


def test_ensure_retention_policy_only_lengthens_and_never_locks(config_gcs: Any) -> None:
    from backstop.core.errors import InvalidInput
    from tasks.operations.buckets import ensure_retention_policy

    bucket = config_gcs.create_bucket(unique("backups")).name
    assert ensure_retention_policy(config_gcs, bucket, 7) is True
    assert ensure_retention_policy(config_gcs, bucket, 3) is False  # never shortened
    found = config_gcs.get_bucket(bucket)
    assert found.retention_period == 7 * 86400 and not found.retention_policy_locked
    with pytest.raises(InvalidInput, match="days must be > 0"):
        ensure_retention_policy(config_gcs, bucket, 0)
