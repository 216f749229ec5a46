"""Concurrent runs on the emulators: two backups of one source at once share the pool safely."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tasks.catalog import index
from tasks.components.gcs import component as gcs_tasks
from tasks.engine.calls import ComponentCalls
from tests.conftest import unique

gcs_component = ComponentCalls("gcs")

pytestmark = pytest.mark.integration


def test_two_backups_of_one_source_at_once_both_commit_whole(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcs_tasks, "BATCH_SIZE", 15)  # several batches each, so the runs interleave
    source = unique("concsrc")
    bucket = gcs.create_bucket(source)
    contents = {f"k{i % 4}/obj-{i:03d}": os.urandom(200 + 13 * i) for i in range(60)}
    for name, data in contents.items():
        bucket.blob(name).upload_from_string(data)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: gcs_component.backup(settings, store, source), range(2))

    assert first.backup_id != second.backup_id
    assert sorted(m.backup_id for m in index.list_manifests(store)) == sorted(
        [first.backup_id, second.backup_id]
    )
    assert store.list("_inprogress/") == {}  # both cleared their markers
    for manifest in (first, second):
        on_disk = store.read_manifest(manifest.path)  # each manifest is complete on its own
        assert on_disk.status == "complete" and {e.name for e in on_disk.entries} == set(contents)
        validated = gcs_component.validate(settings, store, on_disk, 100)
        assert validated.status == "validated" and validated.validation is not None
        assert validated.validation.read_back == len(contents)
    # Same source generations, same pool keys: the pool holds one copy of each object, not two.
    assert len(store.list("pool/gcs/")) == len(contents)
    target = unique("concrestored")
    gcs_component.restore(settings, store, second, target=target)
    assert {b.name: b.download_as_bytes() for b in gcs.list_blobs(target)} == contents


def _moving_source(gcs: Any, versioned: bool) -> tuple[Any, dict[str, bytes]]:
    bucket = gcs.bucket(unique("movingsrc"))
    bucket.versioning_enabled = versioned
    bucket = gcs.create_bucket(bucket)
    before = {f"obj-{i:03d}": f"version one of {i}".encode() * 20 for i in range(40)}
    for name, data in before.items():
        bucket.blob(name).upload_from_string(data)
    return bucket, before


def _backup_while_rewriting(settings: Any, store: Any, bucket: Any) -> Any:
    def rewrite_during(done: int, total: int) -> None:
        if done == 1:  # a writer overwrites objects the backup has listed but not copied yet
            for i in range(30, 40):
                bucket.blob(f"obj-{i:03d}").upload_from_string(b"version two")

    from tasks.engine import units

    workers, units.UNIT_WORKERS = units.UNIT_WORKERS, 1  # batches one after another
    try:
        return gcs_component.backup(settings, store, bucket.name, progress=rewrite_during)
    finally:
        units.UNIT_WORKERS = workers


def test_backup_of_a_versioned_bucket_changing_underneath_keeps_what_it_listed(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcs_tasks, "BATCH_SIZE", 10)
    bucket, before = _moving_source(gcs, versioned=True)
    manifest = _backup_while_rewriting(settings, store, bucket)
    gcs_component.validate(settings, store, manifest, 100)
    target = unique("movingrestored")
    gcs_component.restore(settings, store, manifest, target=target)
    assert {b.name: b.download_as_bytes() for b in gcs.list_blobs(target)} == before  # one point in time


def test_backup_of_an_unversioned_bucket_changing_underneath_still_commits(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcs_tasks, "BATCH_SIZE", 10)
    bucket, before = _moving_source(gcs, versioned=False)
    manifest = _backup_while_rewriting(settings, store, bucket)
    gcs_component.validate(settings, store, manifest, 100)
    target = unique("movingrestored")
    gcs_component.restore(settings, store, manifest, target=target)
    restored = {b.name: b.download_as_bytes() for b in gcs.list_blobs(target)}
    assert set(restored) == set(before)
    assert all(data in (before[name], b"version two") for name, data in restored.items())
