"""The catalog index on the emulator: lookups that never list the pool, entries that are checked
against the manifests, fallback and rebuild for a bucket written before the index existed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from backstop.core.catalog_index import CATALOG_PREFIX, header_key, id_key, indexed_key, status_prefix
from backstop.core.errors import NotFound
from backstop.core.retention import RetentionPolicy
from backstop_cli.main import main
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine.calls import ComponentCalls
from tasks.operations.prune import prune
from tests.components.gcs.test_gcs import seed, snapshot
from tests.conftest import unique

pytestmark = pytest.mark.integration

gcs_component = ComponentCalls("gcs")


class ListingSpy:
    """The real client, with every listing it is asked for recorded (prefix, delimiter)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.listings: list[tuple[str, str | None]] = []

    def list_blobs(self, bucket: Any, prefix: str = "", delimiter: str | None = None, **kw: Any) -> Any:
        self.listings.append((prefix or "", delimiter))
        return self._client.list_blobs(bucket, prefix=prefix, delimiter=delimiter, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def full_listings(spy: ListingSpy) -> list[str]:
    """Listings that return objects (not just folder names) outside the catalog."""
    return [p for p, d in spy.listings if d is None and not p.startswith(CATALOG_PREFIX)]


def test_find_by_id_and_listing_read_the_index_and_never_list_the_pool(
    gcs: Any, settings: Any, store: Any
) -> None:
    source = unique("src")
    contents = seed(gcs, source, 12)
    first = gcs_component.backup(settings, store, source)
    second = gcs_component.backup(settings, store, source)
    spy = ListingSpy(store.client)
    store.client = spy

    found = index.find(store, first.backup_id)
    assert (found.backup_id, found.entry_count) == (first.backup_id, len(contents))
    assert spy.listings == [(first.folder + "_manifest/", None)]  # its own update records only

    spy.listings.clear()
    headers = index.read_headers(store, "gcs", source)
    assert sorted(h.backup_id for h in headers) == sorted([first.backup_id, second.backup_id])
    assert {h.entry_count for h in headers} == {len(contents)}
    assert {h.total_bytes for h in headers} == {sum(map(len, contents.values()))}
    assert full_listings(spy) == []

    spy.listings.clear()
    assert catalog.resolve_backup(store, "gcs", source, validated_only=False).backup_id == second.backup_id
    assert index.read_headers(store) and full_listings(spy) == [second.folder + "_manifest/"]


def test_validation_adds_a_status_record_and_never_replaces_the_header(
    gcs: Any, settings: Any, store: Any
) -> None:
    source = unique("src")
    seed(gcs, source, 6)
    manifest = gcs_component.backup(settings, store, source)
    key = header_key("gcs", source, manifest.backup_id)
    generation = store.stat(key).generation
    gcs_component.validate(settings, store, manifest, 100)

    assert store.stat(key).generation == generation
    assert len(store.list(status_prefix("gcs", source, manifest.backup_id))) == 1
    [header] = index.read_headers(store, "gcs", source)
    assert header.status == "validated" and header.validated_at is not None
    assert catalog.resolve_backup(store, "gcs", source).backup_id == manifest.backup_id


def test_a_missing_or_damaged_entry_is_reported_and_the_manifest_read_instead(
    gcs: Any, settings: Any, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    source = unique("src")
    contents = seed(gcs, source, 6)
    manifest = gcs_component.backup(settings, store, source)
    store.delete([id_key(manifest.backup_id)])
    store.put_bytes(header_key("gcs", source, manifest.backup_id), b'{"backup_id": tru')

    with caplog.at_level(logging.WARNING):
        assert index.find(store, manifest.backup_id).entry_count == len(contents)
        [header] = index.read_headers(store, "gcs", source)
    assert header.backup_id == manifest.backup_id and header.entry_count == len(contents)
    assert "has no catalog id entry" in caplog.text and "damaged catalog entry" in caplog.text
    with pytest.raises(NotFound, match="backup 20990101T000000Z-abcdef not found"):
        index.find(store, "20990101T000000Z-abcdef")


def test_an_entry_claiming_validation_is_not_trusted_for_restore(gcs: Any, settings: Any, store: Any) -> None:
    source = unique("src")
    seed(gcs, source, 6)
    manifest = gcs_component.backup(settings, store, source)  # complete, never validated
    index.write_entry(store, manifest.model_copy(update={"status": "validated"}), first=False)
    assert index.read_headers(store, "gcs", source)[0].status == "validated"  # what the index claims

    reported: list[str] = []
    with pytest.raises(NotFound, match="no validated backup"):
        catalog.resolve_backup(store, "gcs", source, on_damaged=reported.append)
    assert reported and "says validated" in reported[0] and "says complete" in reported[0]


def test_a_bucket_written_before_the_index_is_read_then_rebuilt(
    gcs: Any, settings: Any, store: Any, saved_settings: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = unique("src")
    seed(gcs, source, 6)
    first = gcs_component.backup(settings, store, source)
    gcs_component.validate(settings, store, first, 100)
    second = gcs_component.backup(settings, store, source)
    store.delete(sorted(store.list(CATALOG_PREFIX)))  # as the previous version left it

    with caplog.at_level(logging.WARNING):
        assert {m.backup_id for m in index.list_manifests(store, "gcs", source)} == {
            first.backup_id,
            second.backup_id,
        }
        assert index.find(store, first.backup_id).status == "validated"
    assert "catalog index of gcs/" in caplog.text and "not built" in caplog.text

    assert main(["--settings", saved_settings, "catalog", "rebuild", "--json"]) == 0
    assert store.stat(indexed_key("gcs", source)) is not None
    headers = {h.backup_id: h.status for h in index.read_headers(store, "gcs", source)}
    assert headers == {first.backup_id: "validated", second.backup_id: "complete"}
    assert store.stat(id_key(second.backup_id)) is not None


def test_prune_never_sweeps_the_data_of_a_manifest_missing_from_the_index(
    gcs: Any, settings: Any, store: Any
) -> None:
    source = unique("src")
    seed(gcs, source, 8)
    before = snapshot(gcs, source)
    old = gcs_component.backup(settings, store, source)
    for name in list(before)[:4]:  # the next backup no longer references these pool objects
        gcs.bucket(source).blob(name).delete()
    gcs_component.backup(settings, store, source)
    store.delete([header_key("gcs", source, old.backup_id)])  # a commit interrupted before its index

    keep_all = RetentionPolicy(keep_last=10, keep_daily=0, keep_weekly=0, keep_monthly=0, min_validated=1)
    report = prune(store, "gcs", source, keep_all, old.started_at, grace_hours=0)
    assert any(old.backup_id in note and "no catalog entry" in note for note in report.notes)
    assert report.deleted_objects == 0

    target = unique("restored")
    gcs_component.restore(settings, store, index.find(store, old.backup_id), target=target)
    assert snapshot(gcs, target) == before
