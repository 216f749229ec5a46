"""Chunked manifests (format 2) on the emulator, and manifests written by the previous format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backstop.core.errors import ValidationFailed
from backstop.core.manifest import CHUNKED_FORMAT
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine.calls import ComponentCalls
from tests.components.gcs.test_gcs import seed, snapshot
from tests.conftest import unique

pytestmark = pytest.mark.integration

gcs_component = ComponentCalls("gcs")


def chunked_backup(gcs: Any, settings: Any, store: Any, count: int = 10, per_chunk: int = 4) -> Any:
    source = unique("src")
    seed(gcs, source, count)
    store.chunk_entries = per_chunk
    return source, snapshot(gcs, source), gcs_component.backup(settings, store, source)


def test_a_large_manifest_is_a_small_header_and_chunks_that_restore_byte_identical(
    gcs: Any, settings: Any, store: Any
) -> None:
    source, before, manifest = chunked_backup(gcs, settings, store)
    document = json.loads(store.get_bytes(manifest.path))
    assert document["format"] == CHUNKED_FORMAT and document["entries"] == []
    sizes = [c["entries"] for c in document["chunks"]]  # cut where the names say, 2 a chunk on average
    assert sum(sizes) == 10 and len(sizes) > 1 and max(sizes) <= 2 * 4, sizes
    for ref in document["chunks"]:  # content-addressed, beside the manifest
        assert store.stat(manifest.folder + ref["key"]) is not None and ref["sha256"] in ref["key"]

    [header] = index.read_headers(store, "gcs", source)
    assert header.entry_count == len(before) and header.total_bytes == sum(len(v[0]) for v in before.values())
    validated = gcs_component.validate(settings, store, index.find(store, manifest.backup_id), 100)
    assert validated.status == "validated" and validated.validation.checked == len(before)

    target = unique("restored")
    restored = catalog.resolve_backup(store, "gcs", source)
    assert restored.entry_count == len(before)
    gcs_component.restore(settings, store, restored, target=target)
    assert snapshot(gcs, target) == before


def _flip(data: bytes) -> bytes:
    return data[:20] + bytes([data[20] ^ 1]) + data[21:]


@pytest.mark.parametrize(
    ("how", "message"), [("flipped", "does not match its digest"), ("missing", "chunk missing")]
)
def test_a_damaged_or_missing_chunk_makes_the_manifest_damaged_and_is_named(
    gcs: Any, settings: Any, store: Any, how: str, message: str
) -> None:
    source, _, manifest = chunked_backup(gcs, settings, store)
    key = manifest.folder + json.loads(store.get_bytes(manifest.path))["chunks"][1]["key"]
    if how == "flipped":
        store.put_bytes(key, _flip(store.get_bytes(key)))
    else:
        store.delete([key])

    # The header still reads (it is what listings and lookups need); the entries are streamed
    # by what needs them, and the damaged chunk is named there: validation fails, a restore
    # refuses before writing anything.
    header = index.find(store, manifest.backup_id)
    with pytest.raises(ValidationFailed, match=message) as failure:
        gcs_component.validate(settings, store, header, 0)
    assert key in str(failure.value)
    target = unique("restored")
    with pytest.raises(ValidationFailed, match=message) as failure:
        gcs_component.restore(settings, store, header, target=target)
    assert key in str(failure.value)
    assert gcs.lookup_bucket(target) is None or not list(gcs.list_blobs(target))


def test_a_manifest_written_by_the_previous_format_still_validates_and_restores(
    gcs: Any, settings: Any, store: Any
) -> None:
    source = unique("src")
    seed(gcs, source, 8)
    before = snapshot(gcs, source)
    manifest = gcs_component.backup(settings, store, source)
    document = json.loads(store.get_bytes(manifest.path))
    del document["chunks"]  # the previous format had no such field; its digest never covered it
    store.put_bytes(manifest.path, json.dumps(document, indent=1).encode())

    old = index.find(store, manifest.backup_id)
    assert old.format == 1 and old.entry_count == len(before)
    validated = gcs_component.validate(settings, store, old, 100)
    target = unique("restored")
    gcs_component.restore(settings, store, validated, target=target)
    assert snapshot(gcs, target) == before


def test_backups_that_differ_in_a_few_objects_share_chunks_and_prune_keeps_what_they_reference(
    gcs: Any, settings: Any, store: Any
) -> None:
    """Objects added, changed and deleted between backups change only the chunks around them; prune
    reads a shared chunk once, and removes exactly the data only the removed backup referenced."""
    from datetime import UTC, datetime

    from backstop.core.retention import RetentionPolicy
    from tasks.operations.prune import prune

    source, _, first = chunked_backup(gcs, settings, store, count=60, per_chunk=4)
    bucket = gcs.bucket(source)
    bucket.blob("data/part 001/added.csv").upload_from_string(b"new", content_type="text/csv")
    bucket.blob("logs/0.txt").upload_from_string(b"changed", content_type="text/csv")
    bucket.blob("logs/3.txt").delete()
    second = gcs_component.backup(settings, store, source)
    third = gcs_component.backup(settings, store, source)
    before = snapshot(gcs, source)

    def digests(manifest: Any) -> list[str]:
        return [c.sha256 for c in index.find(store, manifest.backup_id).chunks]

    shared = set(digests(first)) & set(digests(second))
    assert len(shared) >= len(digests(first)) - 6, (digests(first), digests(second))
    assert digests(third) == digests(second)  # nothing changed: the same chunks

    def referenced(manifest: Any) -> set[str]:
        return {e.stored_key for e in store.iter_stored(index.find(store, manifest.backup_id))}

    only_first = referenced(first) - referenced(second)
    assert len(only_first) == 2  # the changed object's old version and the deleted object
    keep = RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    report = prune(store, "gcs", source, keep, datetime.now(UTC), grace_hours=0)
    assert report.not_deleted == [] and report.notes == []
    pool = set(store.list(f"pool/gcs/{source}/"))
    assert pool == referenced(second) | referenced(third) and not pool & only_first
    target = unique("restored")
    gcs_component.restore(settings, store, index.find(store, third.backup_id), target=target)
    assert snapshot(gcs, target) == before


def test_reverification_compares_a_shared_chunk_once_and_tells_every_backup_that_holds_it(
    gcs: Any, settings: Any, store: Any
) -> None:
    """Two backups of an unchanged bucket have the same chunks: re-verification compares each once
    (one listing, one read for both), yet counts and marks both, each naming the damaged object."""
    from tasks.engine.reverify import reverify
    from tests.contract.test_contract import flip_one_byte

    source, _, first = chunked_backup(gcs, settings, store, count=12, per_chunk=4)
    second = gcs_component.backup(settings, store, source, validate_after=True)
    first = gcs_component.validate(settings, store, index.find(store, first.backup_id))
    assert (first.status, second.status) == ("validated", "validated")
    shared = [c.sha256 for c in index.find(store, second.backup_id).chunks]
    assert shared == [c.sha256 for c in index.find(store, first.backup_id).chunks]
    victim = next(e for e in store.iter_entries(index.find(store, first.backup_id)) if e.size)
    flip_one_byte(store, victim.stored_key)

    report = reverify(settings, store, ["gcs"], share=1.0)
    (result,) = [r for r in report.sources if (r.source, r.where) == (source, "primary")]
    entries = index.find(store, first.backup_id).entry_count
    # every object compared for each backup; all but the damaged one (the listing shows it) re-read
    assert (result.backups, result.objects, result.read_back) == (2, 2 * entries, 2 * (entries - 1))
    assert sorted(result.damaged) == sorted([first.backup_id, second.backup_id])
    for backup_id in (first.backup_id, second.backup_id):
        assert any(repr(victim.name) in p for p in result.damaged[backup_id]), result.damaged
        assert index.find(store, backup_id).status == "invalid"
