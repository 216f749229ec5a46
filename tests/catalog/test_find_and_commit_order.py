"""What the catalog promises about one backup's objects: a lookup by id returns that backup's
manifest and no other, and the manifest is written before the index entries that point at it."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.catalog_index import header_key, id_key
from tasks.catalog import index
from tasks.engine.calls import ComponentCalls
from tests.components.gcs.test_gcs import seed
from tests.conftest import unique

pytestmark = pytest.mark.integration

gcs_component = ComponentCalls("gcs")


def test_find_by_id_never_returns_another_backups_manifest(gcs: Any, settings: Any, store: Any) -> None:
    source = unique("src")
    seed(gcs, source, 3)
    first = gcs_component.backup(settings, store, source)
    second = gcs_component.backup(settings, store, source)
    # The first backup's id entry now points at the second backup's manifest (a stale or damaged index).
    store.put_bytes(id_key(first.backup_id), store.get_bytes(id_key(second.backup_id)))

    found = index.find(store, first.backup_id)
    assert found.backup_id == first.backup_id and found.path == first.path


def test_the_manifest_is_written_before_the_index_entries_that_point_at_it(
    gcs: Any, settings: Any, store: Any
) -> None:
    """A run whose manifest was never written did not happen: no index entry may exist before it
    (a crash between the two would leave an entry pointing at nothing)."""
    source = unique("src")
    seed(gcs, source, 3)
    manifest = gcs_component.backup(settings, store, source)
    written = store.stat(manifest.path)
    for key in (header_key("gcs", source, manifest.backup_id), id_key(manifest.backup_id)):
        entry = store.stat(key)
        assert entry is not None, key
        assert int(written.generation) < int(entry.generation), f"{key} was written before the manifest"
