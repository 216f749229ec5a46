"""Faults during a Cloud Storage backup: the emulator dies halfway."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.errors import Unavailable
from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from localdev.platform import PROJECT, LocalPlatform
from tasks.catalog import index
from tasks.components.gcs import component as gcs
from tasks.engine import units
from tasks.engine.calls import ComponentCalls
from tasks.storage.bucket import BackupStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_emulator_killed_mid_backup_leaves_no_manifest_and_next_run_succeeds(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = LocalPlatform.with_free_ports(tmp_path, services=("gcs",), persistent=True)
    for key, value in own.up().items():
        monkeypatch.setenv(key, value)
    try:
        client = storage_client(PROJECT)
        source = client.create_bucket("faulty-source")
        for i in range(40):
            source.blob(f"obj-{i:02d}").upload_from_string(f"payload {i}".encode() * 100)
        client.create_bucket("faulty-backups")
        settings = BackstopSettings(project=PROJECT, backup_bucket="faulty-backups")
        monkeypatch.setattr(gcs, "BATCH_SIZE", 10)  # several batches, so the kill lands halfway
        monkeypatch.setattr(units, "UNIT_WORKERS", 1)  # one after another: exactly one copied

        def kill_after_first_batch(done: int, total: int) -> None:
            if done == 1:
                own.kill("gcs")

        store = BackupStore(client, "faulty-backups")
        with pytest.raises(Unavailable, match="faulty-source"):
            ComponentCalls("gcs").backup(settings, store, "faulty-source", progress=kill_after_first_batch)

        own.up()  # same ports, same on-disk state
        client = storage_client(PROJECT)
        store = BackupStore(client, "faulty-backups")
        assert index.list_manifests(store) == []  # the interrupted run did not happen
        manifest = ComponentCalls("gcs").backup(settings, store, "faulty-source")
        assert len(manifest.entries) == 40
        assert manifest.source_state["reused"] == 10  # the batch copied before the kill is not copied again
        ComponentCalls("gcs").validate(settings, store, manifest, 100)
        ComponentCalls("gcs").restore(settings, store, manifest, target="faulty-restored")
        restored = {b.name: b.download_as_bytes() for b in client.list_blobs("faulty-restored")}
        assert restored == {f"obj-{i:02d}": f"payload {i}".encode() * 100 for i in range(40)}
    finally:
        own.down()
