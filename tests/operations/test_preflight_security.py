"""A secondary copy really elsewhere and preflight's security checks, on Backstop's local Cloud Storage
server (it keeps each bucket's location, IAM policy, access settings and default KMS key)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backstop.core.errors import ValidationFailed
from backstop.core.manifest import BackupManifest, SecondaryCopy, utcnow
from blocks.settings import BackstopSettings
from localdev.platform import PROJECT
from tasks.catalog import backups as catalog
from tasks.engine.secondary import copy_to_secondary
from tasks.storage.bucket import BackupStore
from tests.conftest import unique

pytestmark = pytest.mark.integration

PRIMARY_KEY = f"projects/{PROJECT}/locations/us-central1/keyRings/backstop/cryptoKeys/backups"
SECONDARY_KEY = f"projects/{PROJECT}/locations/europe-west1/keyRings/backstop/cryptoKeys/backups-dr"


def settings_elsewhere(**extra: Any) -> BackstopSettings:
    fields: dict[str, Any] = {
        "project": PROJECT,
        "backup_bucket": unique("backups"),
        "secondary_bucket": unique("backups-dr"),
        "location": "us-central1",
        "secondary_location": "europe-west1",
        "kms_key_name": PRIMARY_KEY,
        "secondary_kms_key_name": SECONDARY_KEY,
    }
    return BackstopSettings(**(fields | extra))


def errors(findings: list[dict[str, str]]) -> dict[str, str]:
    return {f"{f['bucket']} {f['check']}": f["message"] for f in findings if f["level"] == "error"}


@pytest.mark.flow
def test_bootstrap_puts_the_secondary_in_its_own_location_with_its_own_key_and_preflight_is_green(
    policy_gcs: Any, prefect_harness: None, monkeypatch: Any
) -> None:
    from deployments.bootstrap import ensure_backup_buckets
    from flows.harden import harden_backup_buckets
    from flows.retention import preflight_check

    settings = settings_elsewhere()
    name = unique("settings")
    settings.save(name, overwrite=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    assert ensure_backup_buckets(name) == [settings.backup_bucket, settings.secondary_bucket]
    primary, secondary = (
        policy_gcs.get_bucket(b) for b in (settings.backup_bucket, settings.secondary_bucket)
    )
    assert (primary.location, primary.default_kms_key_name) == ("US-CENTRAL1", PRIMARY_KEY)
    assert (secondary.location, secondary.default_kms_key_name) == ("EUROPE-WEST1", SECONDARY_KEY)
    for bucket in (primary, secondary):  # new buckets start hardened
        assert bucket.iam_configuration.uniform_bucket_level_access_enabled
        assert bucket.iam_configuration.public_access_prevention == "enforced"
        assert bucket.retention_period == 7 * 86400 and not bucket.retention_policy_locked
        assert bucket.object_retention_mode == "Enabled"  # backups can be locked until their keep date

    assert harden_backup_buckets(settings_block=name)["changed"] is False
    findings = preflight_check(name)  # the scheduled flow: it would fail on a red finding
    assert errors(findings) == {}
    checks = {(f["bucket"], f["check"]): f for f in findings}
    assert checks[(settings.secondary_bucket, "secondary location")]["message"] == (
        "secondary in EUROPE-WEST1, primary in US-CENTRAL1"
    )
    assert checks[(settings.secondary_bucket, "key location")]["level"] == "ok"
    assert checks[(settings.backup_bucket, "public access")]["level"] == "ok"
    assert "not locked" in checks[(settings.backup_bucket, "retention lock")]["message"]
    assert checks[(settings.backup_bucket, "object retention")]["level"] == "ok"
    assert checks[(settings.backup_bucket, "backup project")]["level"] == "warning"  # same project


@pytest.mark.flow
def test_preflight_fails_on_a_same_location_secondary_a_shared_key_and_a_public_bucket(
    policy_gcs: Any, prefect_harness: None, monkeypatch: Any, capsys: Any
) -> None:
    from backstop_cli.main import main
    from flows.retention import preflight_check

    settings = settings_elsewhere(secondary_location=None, secondary_kms_key_name=None)
    for bucket in (settings.backup_bucket, settings.secondary_bucket):
        policy_gcs.create_bucket(bucket, location="us-central1")
    public = policy_gcs.get_bucket(settings.backup_bucket)
    policy = public.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": "roles/storage.objectViewer", "members": {"allUsers"}})
    public.set_iam_policy(policy)
    name = unique("settings")
    settings.save(name, overwrite=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)

    with pytest.raises(ValidationFailed, match="red finding") as failed:
        preflight_check(name)
    red = " | ".join(failed.value.problems)
    assert "same location as the primary (US-CENTRAL1)" in red
    assert f"same KMS key ({PRIMARY_KEY})" in red
    assert "backup storage is public: roles/storage.objectViewer to allUsers" in red

    assert main(["--settings", name, "preflight", "--json"]) == 1
    found = errors(json.loads(capsys.readouterr().out))
    assert set(found) == {
        f"{settings.secondary_bucket} secondary location",
        f"{settings.secondary_bucket} secondary key",
        f"{settings.backup_bucket} public access",
    }


def test_preflight_flags_a_key_in_another_location_than_its_bucket(policy_gcs: Any) -> None:
    from tasks.operations.security import preflight_security

    settings = settings_elsewhere(secondary_kms_key_name=PRIMARY_KEY.replace("us-central1", "us-east1"))
    policy_gcs.create_bucket(settings.backup_bucket, location="us-central1")
    policy_gcs.create_bucket(settings.secondary_bucket, location="europe-west1")
    [red] = [f for f in preflight_security(policy_gcs, settings) if f.level == "error"]
    assert red.bucket == settings.secondary_bucket and red.check == "key location"
    assert "is in us-east1, the bucket in europe-west1" in red.message


def test_manifests_record_the_key_of_each_copy(policy_gcs: Any) -> None:
    primary = BackupStore(policy_gcs, policy_gcs.create_bucket(unique("backups")).name, PRIMARY_KEY)
    secondary = BackupStore(policy_gcs, policy_gcs.create_bucket(unique("backups-dr")).name, SECONDARY_KEY)
    manifest = catalog.commit_backup(primary, catalog.begin_backup(primary, "gcs", unique("src")), [])
    copied = copy_to_secondary(primary, secondary, manifest)
    for store in (primary, secondary):
        read = store.read_manifest(manifest.path)
        assert read.kms_key_name == PRIMARY_KEY  # the primary copy's key
        assert read.secondary is not None and read.secondary.kms_key_name == SECONDARY_KEY
    assert copied.secondary is not None and copied.secondary.ok


def test_a_manifest_written_before_the_key_fields_still_verifies() -> None:
    manifest = BackupManifest(
        backup_id="20261101T000000Z-abcdef",
        component="gcs",
        source="raw",
        started_at=utcnow(),
        secondary=SecondaryCopy(bucket="dr", at=utcnow(), ok=True),
    )
    old = json.loads(manifest.to_bytes())
    for field in ("kms_key_name", "kms_key_versions"):
        del old["secondary"][field]  # as an earlier Backstop wrote it
    assert BackupManifest.from_bytes(json.dumps(old).encode()).secondary == manifest.secondary
