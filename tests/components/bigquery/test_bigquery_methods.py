"""BigQuery snapshot method, CMEK, dataset metadata reapplied on restore, unsupported types (bqemulator)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from backstop.core.errors import Conflict, InvalidInput, ValidationFailed
from backstop.core.manifest import new_backup_id
from localdev.platform import PROJECT
from tasks.catalog import index
from tasks.engine.calls import ComponentCalls
from tests.components.bigquery.test_bigquery import BIG_ROWS, TYPE_ROWS, rows_of
from tests.components.bigquery.test_bigquery import dataset as dataset  # noqa: F401 - the seeded-dataset fixture

bq_component = ComponentCalls("bigquery")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Retrieving Arrow record batches:PendingDeprecationWarning"),
]

KMS = "projects/backstop-demo/locations/us/keyRings/backstop/cryptoKeys/backups"


def table_ids(bq: Any, dataset_id: str) -> dict[str, str]:
    return {t.table_id: t.table_type for t in bq.list_tables(f"{PROJECT}.{dataset_id}", timeout=20)}


def test_snapshot_backup_validate_restore_and_prune_with_cmek(
    bq: Any, gcs: Any, settings: Any, dataset: str
) -> None:
    from backstop.core.catalog_index import header_of
    from backstop.core.manifest import utcnow
    from backstop.core.retention import RetentionPolicy
    from tasks.components.bigquery.snapshot import snapshot_dataset
    from tasks.operations.prune import prune
    from tasks.storage.bucket import BackupStore

    settings.kms_key_name = KMS
    store = BackupStore(gcs, settings.backup_bucket, KMS)
    tables = ["events", "types", "big_spenders"]
    first = bq_component.backup(settings, store, dataset, tables=tables, method="snapshot")
    entries = {e.name: e for e in first.entries}
    assert first.options["method"] == "snapshot" and first.kms_key_name == KMS
    assert header_of(first).method == "snapshot"  # its size is compared with snapshots only (health)
    events = entries["events"].metadata
    assert (
        events["snapshot_table"]
        == f"{PROJECT}.{snapshot_dataset(dataset)}.events__{first.backup_id.replace('-', '_')}"
    )
    assert events["kms_key_name"] == KMS and events["snapshot_expires"] > first.started_at.isoformat()
    assert entries["events"].rows == BIG_ROWS and entries["types"].rows == len(TYPE_ROWS)
    assert entries["big_spenders"].metadata["kind"] == "view"  # kept as SQL, as by the other methods
    described = json.loads(store.get_bytes(entries["events"].stored_key))
    assert described["snapshot_table"] == events["snapshot_table"] and described["table_rows"] == BIG_ROWS
    held = table_ids(bq, snapshot_dataset(dataset))
    assert held == {events["snapshot_table"].split(".")[-1]: "SNAPSHOT",
                    entries["types"].metadata["snapshot_table"].split(".")[-1]: "SNAPSHOT"}  # fmt: skip

    # The snapshot is immutable: later changes to the source do not reach the backup.
    bq.query(f"DELETE FROM `{PROJECT}.{dataset}.events` WHERE id > 10", timeout=20).result(timeout=30)
    first = bq_component.validate(settings, store, first, 0)
    assert first.status == "validated"

    target = dataset + "_snaprestore"
    report = bq_component.restore(settings, store, first, target=target)
    assert report.created == 1 + 3  # the dataset and its tables
    assert query_count(bq, f"{target}.events") == BIG_ROWS
    assert rows_of(bq, target, "types") == rows_of(bq, dataset, "types")
    out = bq.get_table(f"{target}.events")
    assert out.time_partitioning.field == "day" and out.clustering_fields == ["user"]
    assert out.labels == {"tier": "gold"} and out.description == "partitioned and clustered"
    assert query_count(bq, f"{target}.big_spenders") > 0  # the view reads the restored table
    assert bq_component.check_restored(settings, store, first, target) == []

    # Prune: the older backup's snapshot tables go with its manifest; the newer backup keeps its own.
    second = bq_component.backup(settings, store, dataset, method="snapshot")
    second = bq_component.validate(settings, store, second, 0)
    pruned = prune(store, "bigquery", dataset, RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0,
                   keep_monthly=0), utcnow(), grace_hours=0, release=lambda m: bq_component.delete(settings, m))  # fmt: skip
    assert pruned.plan.remove_ids == [first.backup_id]
    assert table_ids(bq, snapshot_dataset(dataset)) == {
        e.metadata["snapshot_table"].split(".")[-1]: "SNAPSHOT"
        for e in second.entries
        if e.metadata.get("snapshot_table")
    }
    assert [m.backup_id for m in index.list_manifests(store, "bigquery")] == [second.backup_id]

    # A snapshot dropped behind Backstop's back fails validation, naming the table.
    bq.delete_table(
        next(e for e in second.entries if e.name == "events").metadata["snapshot_table"], timeout=20
    )
    with pytest.raises(ValidationFailed, match="'events'.*no longer exists"):
        bq_component.validate(settings, store, second, 0)


def test_snapshot_of_a_table_changed_since_the_backup_start_fails_and_leaves_nothing(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    from backstop.core.errors import Conflict
    from tasks.catalog.backups import abandon_backup, begin_backup
    from tasks.components.bigquery.backup import backup_table
    from tasks.components.bigquery.component import COMPONENT as bigquery
    from tasks.components.bigquery.snapshot import snapshot_dataset

    manifest = begin_backup(store, "bigquery", dataset, {"method": "snapshot"})
    time.sleep(1.1)  # the emulator's time travel resolves whole seconds
    bq.query(f"DELETE FROM `{PROJECT}.{dataset}.events` WHERE id > 10", timeout=20).result(timeout=30)
    entries: list[Any] = []
    with pytest.raises(Conflict, match=f"{dataset}.events changed during the backup.*10 rows.*{BIG_ROWS}"):
        try:
            entries += backup_table(
                settings, store, manifest, dataset, "events", manifest.started_at, "snapshot"
            )
        except BaseException:
            bigquery.delete(settings, manifest.model_copy(update={"entries": entries}))
            abandon_backup(store, manifest)
            raise
    assert table_ids(bq, snapshot_dataset(dataset)) == {}
    assert index.list_manifests(store, "bigquery") == [] and store.in_progress("bigquery", dataset) == []


def store_tables(settings_block: str, backup_id: str) -> dict[str, int]:
    """Rows per table that backup `backup_id` holds, as its manifest says."""
    from blocks.settings import load_settings
    from tasks.storage.bucket import open_store

    return dict(index.find(open_store(load_settings(settings_block)), backup_id).source_state["tables"])


def query_count(bq: Any, ref: str) -> int:
    return int(list(bq.query(f"SELECT COUNT(*) FROM `{PROJECT}.{ref}`", timeout=20).result(timeout=30))[0][0])


def test_unknown_method_is_refused_before_anything_is_written(
    settings: Any, store: Any, dataset: str
) -> None:
    with pytest.raises(InvalidInput, match="method.*'read', 'extract' or 'snapshot'"):
        bq_component.backup(settings, store, dataset, method="parquet")
    assert index.list_manifests(store, "bigquery") == []


def test_restore_into_existing_dataset_reapplies_labels_description_and_access(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    from google.cloud import bigquery

    reader = bigquery.AccessEntry("READER", "userByEmail", "analyst@example.com")
    ds = bq.get_dataset(dataset, timeout=20)
    ds.access_entries = [reader]
    bq.update_dataset(ds, ["access_entries"], timeout=20)
    manifest = bq_component.backup(settings, store, dataset, tables=["types"])

    ds = bq.get_dataset(dataset, timeout=20)
    ds.labels, ds.description, ds.access_entries = {"team": "other", "extra": "kept"}, "changed", []
    bq.update_dataset(ds, ["labels", "description", "access_entries"], timeout=20)
    bq.delete_table(f"{dataset}.types", timeout=20)

    with pytest.raises(Conflict, match="overwrite was not asked"):  # labels and description would change
        bq_component.restore(settings, store, manifest)
    assert bq.get_dataset(dataset, timeout=20).description == "changed"  # nothing written
    report = bq_component.restore(settings, store, manifest, overwrite=True, yes=True)
    assert report.created == 1 and not [a for a in report.actions if a["change"] == "note"]
    restored = bq.get_dataset(dataset, timeout=20)
    assert restored.labels == {"team": "data", "extra": "kept"}  # saved labels win, others stay
    assert restored.description == "seeded by the tests"
    assert [(e.role, e.entity_type, e.entity_id) for e in restored.access_entries] == [
        ("READER", "userByEmail", "analyst@example.com")
    ]
    assert rows_of(bq, dataset, "types") and len(rows_of(bq, dataset, "types")) == len(TYPE_ROWS)


def test_restore_of_a_bignumeric_table_fails_at_once_naming_table_and_type(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    # A backup taken on Google BigQuery can hold BIGNUMERIC columns; the emulator cannot create them.
    manifest = bq_component.backup(settings, store, dataset, tables=["empty"], method="read")
    entry = next(e for e in manifest.entries if e.name == "empty")
    entry.metadata["schema"] = [
        f | {"type": "BIGNUMERIC"} if f["name"] == "n" else f for f in entry.metadata["schema"]
    ]
    # as if the backup had been taken there: a backup of its own, whose entries use the same files
    manifest = manifest.model_copy(update={"backup_id": new_backup_id(), "digest": None})
    index.write_manifest(store, manifest)
    start = time.monotonic()
    with pytest.raises(InvalidInput, match=r"empty.*n BIGNUMERIC"):
        bq_component.restore(settings, store, manifest, target=dataset + "_bignum")
    assert time.monotonic() - start < 3  # no retry loop on the HTTP 500


@pytest.mark.flow
def test_flow_and_cli_take_the_method(
    bq: Any, saved_settings: str, dataset: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from backstop_cli.main import main
    from flows.bigquery import backup_bigquery
    from tasks.components.bigquery.snapshot import snapshot_dataset

    (row,) = backup_bigquery(
        [dataset], {"tables": ["types"], "method": "snapshot"}, settings_block=saved_settings
    )
    assert store_tables(saved_settings, row["backup_id"]) == {"types": len(TYPE_ROWS)}
    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))
    args = ["--settings", saved_settings, "backup", "bigquery", "--dataset", dataset, "--table", "events",
            "--method", "snapshot", "--json"]  # fmt: skip
    assert main(args) == 0
    assert store_tables(saved_settings, json.loads(capsys.readouterr().out)[0]["backup_id"]) == {
        "events": BIG_ROWS
    }
    assert set(table_ids(bq, snapshot_dataset(dataset)).values()) == {"SNAPSHOT"}
    assert len(table_ids(bq, snapshot_dataset(dataset))) == 2
