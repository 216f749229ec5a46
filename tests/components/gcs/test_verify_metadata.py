"""The Cloud Storage post-restore check compares what the backup keeps of each object: its bytes
and its metadata (content type and the other kept properties, custom metadata)."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.engine import lifecycle, restore
from tasks.engine.protocol import Context, RestoreRequest, get_component
from tests.conftest import unique

pytestmark = pytest.mark.integration


def test_an_object_with_other_metadata_fails_the_post_restore_check(
    gcs: Any, settings: Any, store: Any
) -> None:
    source = gcs.create_bucket(unique("src"))
    blob = source.blob("data/a.csv")
    blob.metadata = {"owner": "team-a"}
    blob.upload_from_string(b"id\n1\n", content_type="text/csv")
    manifest = lifecycle.backup("gcs", settings, source.name, store=store)
    target = unique("restored")
    restore.restore("gcs", settings, RestoreRequest(source=source.name, target=target), store=store)
    component = get_component("gcs")
    ctx = Context(settings, store, component.Options())
    assert component.verify_restored(ctx, manifest, target, None) == []

    restored = gcs.bucket(target).get_blob("data/a.csv")
    restored.metadata = {"owner": "someone else"}
    restored.patch()
    problems = component.verify_restored(ctx, manifest, target, None)
    assert len(problems) == 1 and problems[0].startswith(f"metadata differs in gs://{target}: data/a.csv")
