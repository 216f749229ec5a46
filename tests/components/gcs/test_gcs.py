"""Cloud Storage backup / validate / restore on fake-gcs-server."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from backstop.core.errors import Conflict, InvalidInput, NotFound, ValidationFailed
from tasks.catalog import index
from tasks.engine.calls import ComponentCalls
from tests.conftest import unique

gcs_component = ComponentCalls("gcs")

pytestmark = pytest.mark.integration


def seed(client: Any, bucket_name: str, count: int = 30) -> dict[str, bytes]:
    bucket = client.create_bucket(bucket_name)
    contents: dict[str, bytes] = {}
    for i in range(count):
        name = f"data/part {i:03d}/ü-{i}.csv" if i % 3 else f"logs/{i}.txt"
        contents[name] = hashlib.sha256(str(i).encode()).digest() * (i + 1)
    for name, data in contents.items():
        blob = bucket.blob(name)
        blob.metadata = {"owner": "team-a", "n": name[-5:]}
        blob.cache_control = "no-cache"
        blob.upload_from_string(data, content_type="text/csv")
    bucket.blob("data/").upload_from_string(b"")  # a folder placeholder: not data
    return contents


def snapshot(client: Any, bucket: str) -> dict[str, tuple[bytes, str, str | None, dict[str, str] | None]]:
    return {
        b.name: (b.download_as_bytes(), b.content_type, b.cache_control, b.metadata)
        for b in client.list_blobs(bucket)
        if not b.name.endswith("/")
    }


def test_round_trip_is_byte_identical_with_metadata(gcs: Any, settings: Any, store: Any) -> None:
    source = unique("src")
    seed(gcs, source)
    before = snapshot(gcs, source)
    manifest = gcs_component.backup(settings, store, source)
    assert len(manifest.entries) == len(before)  # the placeholder is not counted
    assert store.read_manifest(manifest.path).backup_id == manifest.backup_id
    validated = gcs_component.validate(settings, store, manifest, 100)
    assert validated.status == "validated" and validated.validation.read_back == len(before)

    target = unique("restored")
    report = gcs_component.restore(settings, store, validated, target=target)
    assert report.created == len(before) and not report.conflicts
    assert snapshot(gcs, target) == before
    assert gcs_component.check_restored(settings, store, validated, target) == []


def test_incremental_copies_only_changes_and_older_backups_can_go(
    gcs: Any, settings: Any, store: Any
) -> None:
    source = unique("src")
    seed(gcs, source, 20)
    first = gcs_component.backup(settings, store, source)
    bucket = gcs.bucket(source)
    bucket.blob("logs/0.txt").upload_from_string(b"changed")  # new content
    bucket.blob("logs/3.txt").delete()
    same = bucket.get_blob("logs/6.txt")
    rewritten = bucket.blob("logs/6.txt")
    rewritten.metadata, rewritten.cache_control = same.metadata, same.cache_control
    rewritten.upload_from_string(
        same.download_as_bytes(), content_type="text/csv"
    )  # same bytes, new generation
    bare = bucket.blob("logs/9.txt")
    bare.upload_from_string(bare.download_as_bytes(), content_type="text/csv")  # same bytes, metadata dropped
    second = gcs_component.backup(settings, store, source)
    assert rewritten.generation != same.generation
    assert second.source_state["copied"] == 2  # logs/0 (content) and logs/9 (metadata)
    assert second.source_state["reused"] == 17
    assert len(second.entries) == 19

    # Deleting the older backup's manifest and its unreferenced data leaves the newer one whole.
    referenced = {e.stored_key for e in second.entries}
    store.delete([first.path])
    store.delete([e.stored_key for e in first.entries if e.stored_key not in referenced])
    gcs_component.validate(settings, store, second, 100)
    target = unique("restored")
    gcs_component.restore(settings, store, second, target=target)
    assert snapshot(gcs, target) == snapshot(gcs, source)


def test_corrupt_and_missing_backup_objects_are_named_by_validate(
    gcs: Any, settings: Any, store: Any
) -> None:
    source = unique("src")
    seed(gcs, source, 6)
    manifest = gcs_component.backup(settings, store, source)
    damaged, missing = manifest.entries[0], manifest.entries[1]
    store.put_bytes(damaged.stored_key, b"X" * damaged.size)  # same size, flipped bytes
    store.delete([missing.stored_key])
    with pytest.raises(ValidationFailed) as failure:
        gcs_component.validate(settings, store, manifest, 100)
    text = str(failure.value)
    assert damaged.name in text and missing.name in text
    assert store.read_manifest(manifest.path).status == "invalid"


def test_restore_never_overwrites_unless_asked(gcs: Any, settings: Any, store: Any) -> None:
    source = unique("src")
    seed(gcs, source, 5)
    manifest = gcs_component.backup(settings, store, source)
    victim = manifest.entries[0].name
    gcs.bucket(source).blob(victim).upload_from_string(b"edited after the backup")
    gcs.bucket(source).blob(manifest.entries[1].name).delete()

    plan = gcs_component.restore(settings, store, manifest, dry_run=True)
    assert {a["name"]: a["change"] for a in plan.actions}[victim] == "replace"
    assert plan.conflicts == [victim]  # refused without overwrite
    with pytest.raises(Conflict, match="overwrite was not asked"):
        gcs_component.restore(settings, store, manifest)
    assert gcs.bucket(source).blob(victim).download_as_bytes() == b"edited after the backup"
    assert gcs.bucket(source).get_blob(manifest.entries[1].name) is None  # nothing written

    with pytest.raises(Conflict, match="not approved"):  # the original bucket: approval first
        gcs_component.restore(settings, store, manifest, overwrite=True)
    assert gcs.bucket(source).blob(victim).download_as_bytes() == b"edited after the backup"
    report = gcs_component.restore(settings, store, manifest, overwrite=True, yes=True)
    assert report.overwritten == 1 and report.created == 1 and report.approval
    assert gcs_component.check_restored(settings, store, manifest, source) == []


def test_restore_one_prefix_or_one_object(gcs: Any, settings: Any, store: Any) -> None:
    source = unique("src")
    contents = seed(gcs, source, 9)
    manifest = gcs_component.backup(settings, store, source)
    target = unique("part")
    gcs_component.restore(settings, store, manifest, target=target, only=["logs/"])
    assert set(snapshot(gcs, target)) == {n for n in contents if n.startswith("logs/")}
    one = next(n for n in contents if n.startswith("data/"))
    gcs_component.restore(settings, store, manifest, target=target, only=[one])
    assert snapshot(gcs, target)[one][0] == contents[one]
    with pytest.raises(NotFound, match="matches"):
        gcs_component.restore(settings, store, manifest, target=target, only=["nope/"])


def test_bad_input_is_refused_before_anything_is_written(gcs: Any, settings: Any, store: Any) -> None:
    with pytest.raises(NotFound, match="gs://no-such-bucket-xyz"):
        gcs_component.backup(settings, store, "no-such-bucket-xyz")
    with pytest.raises(InvalidInput, match="malformed bucket name 'Bad_Bucket!'"):
        gcs_component.backup(settings, store, "Bad_Bucket!")
    assert index.list_manifests(store) == []
    assert store.list("_inprogress/") == {}
