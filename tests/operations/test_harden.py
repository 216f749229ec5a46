"""`backstop harden` on Backstop's local Cloud Storage server, which keeps and enforces bucket
configuration (retention policies, their lock, uniform access, public access prevention)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from blocks.settings import BackstopSettings, RetentionSettings
from localdev.platform import PROJECT
from tasks.operations.harden import harden_bucket, shortest_retention_days
from tests.conftest import unique

pytestmark = pytest.mark.integration


def test_the_retention_period_is_the_shortest_keep_window_of_any_policy() -> None:
    default = BackstopSettings(project=PROJECT, backup_bucket="b")  # keep_daily 7, weekly 4, monthly 12
    assert shortest_retention_days(default) == (7.0, "keep_daily=7 of the default policy")
    tighter = BackstopSettings(
        project=PROJECT,
        backup_bucket="b",
        retention_overrides={"composer": RetentionSettings(keep_daily=0, keep_within_days=2.5)},
    )
    assert shortest_retention_days(tighter) == (2.5, "keep_within_days=2.5 of the composer policy")
    count_only = BackstopSettings(
        project=PROJECT,
        backup_bucket="b",
        retention=RetentionSettings(keep_daily=0, keep_weekly=0, keep_monthly=0),
    )
    days, why = shortest_retention_days(count_only)
    assert days == 1.0 and "count only" in why


def read_back(client: Any, bucket: str) -> dict[str, Any]:
    found = client.get_bucket(bucket)
    return {
        "ubla": found.iam_configuration.uniform_bucket_level_access_enabled,
        "pap": found.iam_configuration.public_access_prevention,
        "soft_delete": found.soft_delete_policy.retention_duration_seconds,
        "retention": found.retention_period,
        "locked": bool(found.retention_policy_locked),
    }


def test_harden_bucket_lengthens_never_shortens_and_turns_soft_delete_back_on(policy_gcs: Any) -> None:
    bucket = policy_gcs.create_bucket(unique("backups"))
    bucket.retention_period = 30 * 86400
    bucket.soft_delete_policy.retention_duration_seconds = 0
    bucket.patch()
    changes = {c.setting: c for c in harden_bucket(policy_gcs, bucket.name, 7)}
    assert all(c.kept for c in changes.values())  # read back after the change
    assert not changes["retention policy"].changed and changes["retention policy"].after == "30 days"
    assert changes["soft delete"].changed and changes["soft delete"].before == "off"
    assert read_back(policy_gcs, bucket.name) == {
        "ubla": True,
        "pap": "enforced",
        "soft_delete": 7 * 86400,
        "retention": 30 * 86400,
        "locked": False,
    }


def test_harden_turns_versioning_off_to_set_the_retention_policy(policy_gcs: Any) -> None:
    bucket = policy_gcs.create_bucket(unique("backups"))
    bucket.versioning_enabled = True
    bucket.patch()
    bucket.retention_period = 86400
    with pytest.raises(gexc.BadRequest, match="both a retention policy and object versioning"):
        bucket.patch()  # as Cloud Storage does
    changes = {c.setting: c for c in harden_bucket(policy_gcs, bucket.name, 7)}
    assert changes["object versioning"].changed and changes["retention policy"].changed
    found = policy_gcs.get_bucket(bucket.name)
    assert not found.versioning_enabled and found.retention_period == 7 * 86400
    assert not any(c.changed for c in harden_bucket(policy_gcs, bucket.name, 7))


@pytest.mark.flow
def test_harden_cli_sets_the_configuration_once_and_locks_only_with_yes(
    policy_gcs: Any, prefect_harness: None, capsys: Any, monkeypatch: Any
) -> None:
    from backstop_cli.main import main

    primary, secondary = (policy_gcs.create_bucket(unique(p)).name for p in ("backups", "backups-dr"))
    settings = BackstopSettings(project=PROJECT, backup_bucket=primary, secondary_bucket=secondary)
    name = unique("settings")
    settings.save(name, overwrite=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    before = read_back(policy_gcs, primary)
    assert before["ubla"] is False and before["retention"] is None

    assert main(["--settings", name, "harden", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "dry run: nothing changed" in text and "uniform bucket-level access" in text
    assert read_back(policy_gcs, primary) == before

    assert main(["--settings", name, "harden"]) == 0
    text = capsys.readouterr().out
    assert "retention policy of 7 days, the shortest retention the settings allow (keep_daily=7" in text
    assert "prune included" in text
    hardened = {
        "ubla": True,
        "pap": "enforced",
        "soft_delete": 7 * 86400,
        "retention": 7 * 86400,
        "locked": False,
    }
    assert read_back(policy_gcs, primary) == hardened
    assert read_back(policy_gcs, secondary) == hardened

    assert main(["--settings", name, "harden", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["changed"] is False and not any(row["changed"] for row in again["changes"])
    assert "nothing changed: the backup buckets were already hardened" in again["notes"]

    assert main(["--settings", name, "harden", "--lock-retention"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "irreversible" in err and "--yes" in err
    assert read_back(policy_gcs, primary)["locked"] is False

    assert main(["--settings", name, "harden", "--lock-retention", "--yes"]) == 0
    assert "irreversible" in capsys.readouterr().out
    assert read_back(policy_gcs, primary)["locked"] is True
    locked = policy_gcs.get_bucket(primary)
    locked.retention_period = 86400
    with pytest.raises(gexc.Forbidden, match="locked retention policy"):
        locked.patch()
    assert main(["--settings", name, "harden", "--lock-retention", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
