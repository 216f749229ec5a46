"""BigQuery guarantees a user relies on without seeing them: a restored table is checked row by
row (its content digest, not just its row count), and a failed snapshot backup leaves no snapshot
table behind (the lifecycle's discard drops what the units made, those still running when another
failed included)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from backstop.core.errors import BackstopError
from localdev.platform import PROJECT
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine import lifecycle, restore
from tasks.engine.protocol import Context, RestoreRequest, get_component
from tests.conftest import unique

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Retrieving Arrow record batches:PendingDeprecationWarning"),
]


def new_dataset(bq: Any, tables: list[str]) -> str:
    from google.cloud import bigquery

    dataset = unique("ds").replace("-", "_")
    bq.create_dataset(bigquery.Dataset(f"{PROJECT}.{dataset}"), timeout=20)
    schema = [bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("name", "STRING")]
    for name in tables:
        table = bq.create_table(bigquery.Table(f"{PROJECT}.{dataset}.{name}", schema=schema), timeout=20)
        assert bq.insert_rows_json(table, [{"id": i, "name": f"n{i}"} for i in range(10)], timeout=20) == []
    return dataset


def test_a_restored_table_with_the_same_row_count_but_other_rows_fails_verification(
    bq: Any, settings: Any, store: Any
) -> None:
    dataset = new_dataset(bq, ["people"])
    manifest = lifecycle.backup("bigquery", settings, dataset, store=store)
    target = unique("restored").replace("-", "_")
    restore.restore("bigquery", settings, RestoreRequest(source=dataset, target=target), store=store)
    bq.query(f"UPDATE `{PROJECT}.{target}.people` SET name = 'other' WHERE id = 3").result(timeout=30)

    component = get_component("bigquery")
    loaded = lifecycle.loaded(component, store, manifest)
    problems = component.verify_restored(Context(settings, store, component.Options()), loaded, target, None)
    assert problems == ["table 'people': restored content differs from the backup (content hash)"]


def test_a_failed_snapshot_backup_leaves_no_snapshot_table(
    bq: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import bigquery

    from tasks.components.bigquery.snapshot import snapshot_dataset

    dataset = new_dataset(bq, ["a_people", "z_broken"])
    holder = snapshot_dataset(dataset)
    copy_table = bigquery.Client.copy_table
    existed: list[list[str]] = []  # the snapshots there when the fault struck

    def snapshots() -> list[str]:
        try:
            return [t.table_id for t in bq.list_tables(f"{PROJECT}.{holder}", timeout=20)]
        except gexc.NotFound:
            return []

    def failing_copy(client: Any, source: Any, destination: Any, *args: Any, **kwargs: Any) -> Any:
        if "z_broken" not in str(source):
            job = copy_table(client, source, destination, *args, **kwargs)
            time.sleep(2)  # this unit is still running when the other one fails
            return job
        deadline = time.monotonic() + 60  # fail once the other table's snapshot exists
        while not snapshots() and time.monotonic() < deadline:
            time.sleep(0.2)
        existed.append(snapshots())
        raise gexc.BadRequest(f"injected fault: copy of {source} refused")

    monkeypatch.setattr(bigquery.Client, "copy_table", failing_copy)
    with pytest.raises(BackstopError, match="injected fault"):
        lifecycle.backup(
            "bigquery", settings, dataset, {"method": "snapshot"}, validate_after=False, store=store
        )
    monkeypatch.undo()

    assert existed and existed[0], "the other table's snapshot was made before the failure"
    assert snapshots() == []
    assert index.list_manifests(store, "bigquery", dataset) == []
    (record,) = catalog.list_runs(store, "bigquery", dataset)
    assert (record.kind, record.outcome) == ("backup", "failed")
