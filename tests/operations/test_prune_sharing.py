"""Composer backups reuse the Cloud Storage pool: pruning Cloud Storage backups must not break them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from backstop.core.manifest import utcnow
from backstop.core.retention import RetentionPolicy
from tasks.catalog import backups as catalog
from tasks.catalog.stored import verify_stored
from tasks.engine.calls import ComponentCalls
from tasks.operations.prune import prune
from tests.conftest import unique

gcs_component = ComponentCalls("gcs")

pytestmark = pytest.mark.integration


def test_gcs_prune_keeps_pool_objects_a_composer_backup_references(
    gcs: Any, settings: Any, store: Any
) -> None:
    bucket = unique("envbucket")
    gcs.create_bucket(bucket).blob("dags/etl.py").upload_from_string(b"print('dag')\n")
    first = gcs_component.backup(settings, store, bucket)
    gcs_component.validate(settings, store, first, 100)
    shared = first.entries[0]

    # A Composer backup of the same environment bucket references the same pooled copy.
    composer = catalog.begin_backup(store, "composer", "env-a")
    catalog.commit_backup(store, composer, [shared.model_copy(update={"name": "dags/etl.py"})])

    # The DAG changes, a newer GCS backup is validated, and retention removes the first one.
    gcs.bucket(bucket).blob("dags/etl.py").upload_from_string(b"print('dag v2')\n")
    second = gcs_component.backup(settings, store, bucket)
    gcs_component.validate(settings, store, second, 100)
    policy = RetentionPolicy(keep_last=1, min_validated=1)
    report = prune(store, "gcs", bucket, policy, utcnow() + timedelta(minutes=1), grace_hours=0)
    assert report.removed == [first.backup_id]

    assert store.stat(shared.stored_key) is not None  # still needed by the Composer backup
    problems = verify_stored(store, store.read_manifest(composer.path), 100).problems
    assert problems == []
