"""The CLI's restore checks its input (settings, the backup's source) before the flow run starts, then
runs the flow in its own process: the flow takes what the checks read instead of reading it again,
and only while that command runs (a later load or lookup reads the API and the bucket again)."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.errors import NotFound
from blocks.settings import BackstopSettings, load_settings, loaded_already
from tasks.catalog import index

pytestmark = pytest.mark.unit


class Bucket:
    """A bucket that holds nothing: every read is counted and answers NotFound."""

    def __init__(self) -> None:
        self.reads = 0

    def where(self, key: str = "") -> str:
        return f"gs://bucket/{key}"

    def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        raise NotFound(key)

    def list_prefixes(self, prefix: str) -> list[str]:
        self.reads += 1
        return []


def test_settings_loaded_by_the_command_are_reused_only_inside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []

    def load(cls: Any, name: str) -> BackstopSettings:
        loads.append(name)
        return BackstopSettings(project="p", backup_bucket=f"bucket-{len(loads)}")

    monkeypatch.setattr(BackstopSettings, "load", classmethod(load))
    first = load_settings("mine")
    with loaded_already("mine", first):
        assert load_settings("mine") is first and loads == ["mine"]
        assert load_settings("other").backup_bucket == "bucket-2"  # another block is read
    assert load_settings("mine").backup_bucket == "bucket-3" and len(loads) == 3


def test_a_backup_found_by_the_command_is_reused_only_inside_it_and_only_for_its_bucket() -> None:
    from datetime import UTC, datetime

    from backstop.core.manifest import BackupManifest

    found = BackupManifest(backup_id="20260101T000000Z-abcdef", component="bigquery", source="ds",
                           started_at=datetime(2026, 1, 1, tzinfo=UTC), folder="f/")  # fmt: skip
    bucket = Bucket()
    with index.found_already(bucket, found):  # type: ignore[arg-type]
        assert index.find(bucket, found.backup_id) is found and bucket.reads == 0  # type: ignore[arg-type]
        other = Bucket()
        other.where = lambda key="": f"gs://other/{key}"  # type: ignore[method-assign]
        with pytest.raises(NotFound):
            index.find(other, found.backup_id)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        index.find(bucket, found.backup_id)  # type: ignore[arg-type]
    assert bucket.reads > 0
