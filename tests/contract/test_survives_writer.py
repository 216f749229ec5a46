"""A kept backup survives its own writer, for every registered component (tests/contract/conftest.py).

The backup buckets here are on Backstop's local Cloud Storage server, which enforces object
retention, retention policies, holds and bucket IAM like the JSON API (the Cloud Storage sources and
Composer buckets too, so one server holds everything a backup copies); the backup runs as the
backup writer of deployments/iam/roles.yaml, its secondary copy as the secondary writer. Then, with
the writer's key, every object of the backup and of its secondary copy is attacked (delete,
overwrite, shorten or remove its retention, release its holds) and so are both buckets (their
retention policy, IAM policy, the bucket itself): nothing gives way, and the backup restores to
exactly what was backed up. For GKE this covers what Backstop keeps in the bucket; the Backup for
GKE backup itself is protected by its backup plan's own retention, outside Cloud Storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backstop.core.retention import RetentionPolicy
from blocks.settings import BackstopSettings
from localdev.platform import PROJECT
from tasks.engine import lifecycle, restore
from tasks.engine.protocol import RestoreRequest
from tasks.engine.secondary import copy_to_secondary
from tasks.storage.bucket import BackupStore
from tests.attacker import Domains, attack_bucket, attack_objects, backup_objects

pytestmark = pytest.mark.integration

GFS = RetentionPolicy()  # the settings' default: last 3, daily 7, weekly 4, monthly 12


@pytest.fixture
def gcs(policy_gcs: Any, platform: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Every Cloud Storage client of this test on the local policy server."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    yield policy_gcs


@pytest.fixture
def domains(gcs: Any) -> Domains:
    return Domains(gcs, GFS)


@pytest.fixture
def settings(domains: Domains) -> BackstopSettings:
    return BackstopSettings(
        project=PROJECT, backup_bucket=domains.primary, secondary_bucket=domains.secondary
    )


def test_a_kept_backup_survives_its_own_writer(
    subject: Any, settings: Any, domains: Domains, gcs: Any
) -> None:
    source = subject.seed()
    before = subject.state(source)
    writer = domains.store("backstop-backup-writer")
    manifest = lifecycle.backup(subject.component, settings, source, store=writer)
    assert manifest.status == "validated", manifest.validation
    copied = copy_to_secondary(
        domains.store("backstop-secondary-writer"), domains.store("backstop-secondary-writer", True), manifest
    )
    assert copied.secondary is not None and copied.secondary.ok, copied.secondary

    owner = {b: BackupStore(gcs, b) for b in (domains.primary, domains.secondary)}
    keys = {bucket: backup_objects(store, manifest) for bucket, store in owner.items()}
    for bucket, found in keys.items():
        unlocked = [k for k in found if owner[bucket].stat(k).retention.retain_until_time is None]
        assert unlocked == [], f"not retained in gs://{bucket}"

    thief = domains.client("backstop-backup-writer")
    for bucket, found in keys.items():
        assert attack_objects(thief, bucket, found) == []
        assert attack_bucket(thief, bucket) == []

    target = subject.new_target(source)
    restorer = domains.store("backstop-restorer")
    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, target=target), store=restorer
    )
    assert report.backup_id == manifest.backup_id and not report.problems
    assert subject.state(target) == before
