"""The Cloud Storage copy path on fake-gcs-server: pool key layouts, backoff on 429 / 503."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from localdev.servers.throttling_proxy import throttling_proxy
from tasks.components.gcs import copy as gcs_copy
from tasks.components.gcs import plan as gcs_plan
from tasks.engine import restore
from tasks.engine.calls import ComponentCalls
from tasks.engine.protocol import RestoreRequest
from tasks.storage import copies
from tests.conftest import read_all, seed_objects, unique

gcs_component = ComponentCalls("gcs")

pytestmark = pytest.mark.integration


def seed(client: Any, count: int) -> tuple[str, dict[str, bytes]]:
    return seed_objects(client, "copysrc", count, 200, 31)


def old_pool_key(bucket: str, name: str, generation: int) -> str:
    """The pool layout before the spread-out prefix (backups made by earlier versions)."""
    return f"pool/gcs/{bucket}/{generation}/{name}"


def test_backup_in_the_old_key_layout_restores_and_an_incremental_reuses_it(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, contents = seed(gcs, 12)
    with monkeypatch.context() as old_code:
        old_code.setattr(gcs_plan, "pool_key", old_pool_key)
        old = gcs_component.backup(settings, store, source)
    assert {e.stored_key for e in old.entries} == {
        old_pool_key(source, e.name, e.generation) for e in old.entries
    }

    changed = "d0/obj-003"
    gcs.bucket(source).blob(changed).upload_from_string(b"changed")
    new = gcs_component.backup(settings, store, source)
    assert (new.source_state["copied"], new.source_state["reused"]) == (1, 11)
    entry = next(e for e in new.entries if e.name == changed)
    assert (
        entry.stored_key
        == gcs_plan.pool_key(source, changed, entry.generation or 0)
        != old_pool_key(source, changed, entry.generation or 0)
    )
    assert {e.stored_key for e in new.entries if e.name != changed} <= {e.stored_key for e in old.entries}
    gcs_component.validate(settings, store, new, 100)

    before, after = unique("old-restored"), unique("new-restored")
    gcs_component.restore(settings, store, old, target=before)
    gcs_component.restore(settings, store, new, target=after)
    assert read_all(gcs, before) == contents
    assert read_all(gcs, after) == contents | {changed: b"changed"}


def test_backup_and_restore_back_off_through_429_and_503_and_stay_byte_identical(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, contents = seed(gcs, 24)
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    with throttling_proxy(emulator, [429, 429, 429, 503, 503]) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)  # the component's clients go through it
        manifest = gcs_component.backup(settings, store, source)
        assert [status for status, _ in proxy.refused] == [429, 429, 429, 503, 503]
        proxy.refusals += [429, 503, 503]
        target = unique("throttled-restored")
        report = gcs_component.restore(settings, store, manifest, target=target)
        assert len(proxy.refused) == 8 and report.created == len(contents)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    assert len(manifest.entries) == len(contents)
    gcs_component.validate(settings, store, manifest, 100)
    assert read_all(gcs, target) == contents


def test_copies_go_in_batch_requests_no_larger_than_a_tenth_of_a_second_of_the_write_rate(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the default-like rate a backup's copies go many to a batch request; at 50 writes/s a batch
    carries at most 5 (no bigger a burst than the ramp allows); either way every object is copied."""
    source, contents = seed(gcs, 60)
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    # 60 copies in 2 groups of 30 (as 800 on 16 workers); the process's copy pool keeps its size
    monkeypatch.setattr(gcs_copy, "copy_workers", lambda: 2)
    for rate, most in ((1_000_000.0, 100), (50.0, 5)):
        settings.gcs_write_rate = rate
        with throttling_proxy(emulator, []) as proxy:
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
            manifest = gcs_component.backup(settings, None, source, validate_after=False)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
        settings.backup_bucket = unique("batch-backups")  # the next rate copies everything again
        gcs.create_bucket(settings.backup_bucket)
        assert len(manifest.entries) == len(contents) and sum(proxy.batches) == len(contents)
        assert max(proxy.batches) <= most and (rate < 1000 or max(proxy.batches) > 5), proxy.batches


def test_a_server_without_the_batch_endpoint_gets_one_batch_request_then_single_copies(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, contents = seed(gcs, 30)
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    with throttling_proxy(emulator, []) as proxy:
        proxy.no_batches = True
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        manifest = gcs_component.backup(settings, None, source, validate_after=False)
        tried = list(proxy.batches)
        target = unique("nobatch-restored")
        report = gcs_component.restore(settings, None, manifest, target=target)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    # the first batch requests (those sent at once by the copy workers) were refused, none after
    assert set(tried) == {0} and len(tried) <= copies.copy_workers() and proxy.batches == tried
    assert len(proxy.copies) == 2 * len(contents) and report.created == len(contents)
    assert read_all(gcs, target) == contents


def test_an_exact_restores_deletes_go_in_batch_requests(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What appeared after the backup is deleted many to a batch request, and only that."""
    source, contents = seed(gcs, 12)
    manifest = gcs_component.backup(settings, store, source)
    added = [f"d{i % 3}/added-{i:03d}" for i in range(40)]
    for name in added:
        gcs.bucket(source).blob(name).upload_from_string(b"after the backup")
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    with throttling_proxy(emulator, []) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        report = gcs_component.restore(settings, store, manifest, overwrite=True, exact=True, yes=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    assert sorted(a["name"] for a in report.actions if a["change"] == "delete") == sorted(added)
    assert read_all(gcs, source) == contents
    assert sum(proxy.batches) == len(added) and max(proxy.batches) > 1, proxy.batches


def test_a_backup_and_a_restore_read_nothing_twice(
    gcs: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round trips are the time of a step against Cloud Storage (tens of ms each), and most of a
    backup's time outside its copies: the backup bucket's metadata is read once, a backup's own
    manifest is looked up once when it is committed and once when its validation is recorded, and
    a restore of the latest backup lists its source's catalog once (for the restore point and for
    opening the backup it names)."""
    source, contents = seed(gcs, 20)
    emulator = os.environ["STORAGE_EMULATOR_HOST"]
    bucket = settings.backup_bucket
    with throttling_proxy(emulator, []) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        settings.validate_sample_percent = 100
        manifest = gcs_component.backup(settings, None, source, validate_after=True)
        backup_requests = list(proxy.requests)
        proxy.requests.clear()
        target = unique("once-restored")
        report = restore.restore("gcs", settings, RestoreRequest(source=source, target=target))
        restore_requests = list(proxy.requests)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    assert report.backup_id == manifest.backup_id and read_all(gcs, target) == contents

    def paths(requests: list[tuple[str, str]], method: str) -> list[str]:
        return [urlsplit(p).path for m, p in requests if m == method]

    manifest_at = f"/storage/v1/b/{bucket}/o/{quote(manifest.path, safe='')}"
    assert paths(backup_requests, "GET").count(f"/storage/v1/b/{bucket}") == 1
    assert paths(backup_requests, "GET").count(manifest_at) == 2
    catalog = f"catalog/gcs/{source}/"
    listings = [
        p for m, p in restore_requests if m == "GET" and urlsplit(p).path == f"/storage/v1/b/{bucket}/o"
    ]
    assert [p for p in listings if parse_qs(urlsplit(p).query).get("prefix") == [catalog]] != []
    assert len([p for p in listings if parse_qs(urlsplit(p).query).get("prefix") == [catalog]]) == 1
    # the stored objects are checked (validation, and opening the backup to restore) against a
    # listing of only what is compared (name, size, crc32c, CMEK key, retention), of the pool in
    # shards listed at once: one a first character of the keys (a hex digit)
    pool = f"pool/gcs/{source}/"
    checked = [
        parse_qs(urlsplit(p).query)
        for m, p in backup_requests + restore_requests
        if m == "GET" and urlsplit(p).path == f"/storage/v1/b/{bucket}/o"
    ]
    checked = [q for q in checked if q.get("prefix", [""])[0].startswith(pool)]
    shards = sorted({b.name[: len(pool) + 1] for b in gcs.list_blobs(bucket, prefix=pool)})
    assert len(shards) > 1 and all(s[-1] in "0123456789abcdef" for s in shards)
    assert sorted(q["prefix"][0] for q in checked) == sorted(shards * 2)  # the validation's, the restore's
    assert all(
        q.get("fields") == ["items(name,size,crc32c,kmsKeyName,retention),nextPageToken"] for q in checked
    )
