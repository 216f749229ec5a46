"""A run in progress, as prune sees it: its marker and its heartbeats under `_inprogress/`."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from backstop.core.manifest import ManifestEntry, utcnow
from backstop.core.retention import RetentionPolicy
from tasks.catalog import backups as catalog
from tasks.operations.prune import prune
from tests.conftest import unique

pytestmark = pytest.mark.integration

WINDOW = 1.5 / 3600  # hours: the 24 hours of a real run, here 1.5 seconds


def test_a_backup_that_beats_stays_in_progress_past_its_markers_window_and_prune_clears_it(
    store: Any,
) -> None:
    """`in_progress` counts a run while its marker or newest heartbeat is younger than the window (24
    hours; 1.5 seconds here): a backup running for days beats every hour and stays in progress, so
    prune keeps off its copies. Once it commits, prune removes the marker and its heartbeats."""
    source = unique("long")
    manifest = catalog.begin_backup(store, "gcs", source)
    time.sleep(3)
    assert store.in_progress("gcs", source, younger_than_hours=WINDOW) == []  # the marker alone is stale
    store.mark_in_progress(manifest, beat=utcnow())  # a heartbeat: in progress again
    assert store.in_progress("gcs", source, younger_than_hours=WINDOW) == [manifest.backup_id]
    assert store.in_progress("gcs", younger_than_hours=WINDOW) == [manifest.backup_id]  # of any source

    def beats() -> list[str]:
        return [k for k in store.list(f"_inprogress/gcs/{source}/") if "+" in k]

    with catalog.beating(store, manifest, every=0.2):  # what a running backup does, every hour
        deadline = time.monotonic() + 30
        while len(beats()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(beats()) >= 3

    data = b"copied"
    store.put_bytes(f"pool/gcs/{source}/1/obj", data)
    entry = ManifestEntry(name="obj", stored_key=f"pool/gcs/{source}/1/obj", size=len(data))
    catalog.commit_backup(store, manifest, [entry])
    assert list(store.list(f"_inprogress/gcs/{source}/")) == []  # the commit clears marker and heartbeats
    store.mark_in_progress(manifest, beat=utcnow())  # as a writer that may not delete leaves them
    assert store.in_progress("gcs", source) == []  # committed: its heartbeats are no running backup

    keep = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    report = prune(store, "gcs", source, keep, utcnow() + timedelta(minutes=1), grace_hours=0)
    assert report.not_deleted == [] and report.notes == []
    assert list(store.list(f"_inprogress/gcs/{source}/")) == []  # the heartbeat left swept
    assert store.stat(f"pool/gcs/{source}/1/obj") is not None  # the backup itself untouched
