"""BigQuery backup / validate / restore on bqemulator (and the flows on the Prefect test harness)."""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal
from typing import Any

import pytest
from google.api_core.retry import Retry

from backstop.core.errors import Conflict, InvalidInput, NotFound, ValidationFailed
from localdev.platform import PROJECT
from tasks.catalog import index
from tasks.catalog.backups import resolve_backup
from tasks.engine.calls import ComponentCalls
from tests.conftest import unique

bq_component = ComponentCalls("bigquery")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Retrieving Arrow record batches:PendingDeprecationWarning"),
]

R = Retry(timeout=20)
BIG_ROWS = 3000


def _fields() -> list[Any]:
    from google.cloud.bigquery import SchemaField as F

    return [
        F("id", "INT64", mode="REQUIRED", description="row id"),
        F("n", "NUMERIC"),
        F("f", "FLOAT64"),
        F("b", "BOOL"),
        F("s", "STRING", description="text ✓"),
        F("by", "BYTES"),
        F("d", "DATE"),
        F("dt", "DATETIME"),
        F("t", "TIME"),
        F("ts", "TIMESTAMP"),
        F("j", "JSON"),
        F("g", "GEOGRAPHY"),
        F("a", "INT64", mode="REPEATED"),
        F("st", "RECORD", fields=[F("x", "STRING"), F("y", "FLOAT64", mode="REPEATED")]),
        F("rs", "RECORD", mode="REPEATED", fields=[F("k", "STRING"), F("v", "INT64")]),
    ]


TYPE_ROWS: list[dict[str, Any]] = [
    {"id": 1, "n": "123.456", "f": float("nan"), "b": True, "s": "héllo ✓ 日本 🙂", "by": base64.b64encode(b"\x00\xff\x10").decode(),
     "d": "2024-01-02", "dt": "2024-01-02T03:04:05.123456", "t": "12:34:56.789", "ts": "2024-01-02T03:04:05.123456Z",
     "j": json.dumps({"x": [1, 2], "y": "ü"}), "g": "POINT(1 2)", "a": [1, 2, 3], "st": {"x": "q", "y": [1.5, -2.0]},
     "rs": [{"k": "a", "v": 1}, {"k": None, "v": None}]},
    {"id": 2, "f": float("inf"), "b": False, "s": "", "by": "", "g": "LINESTRING(0 0, 1 1, 2 0)", "a": [],
     "st": {"x": None, "y": []}, "rs": []},
    {"id": 3, "f": float("-inf"), "n": "-0.000000001", "g": "POLYGON((0 0, 1 0, 1 1, 0 0))"},
    {"id": 4},
]  # fmt: skip


def seed(bq: Any, dataset: str) -> None:
    """A dataset with every supported type, a partitioned + clustered table, an empty table and two views."""
    from google.cloud import bigquery

    ds = bigquery.Dataset(f"{PROJECT}.{dataset}")
    ds.labels, ds.description = {"team": "data"}, "seeded by the tests"
    bq.create_dataset(ds, timeout=20, retry=R)
    types = bq.create_table(
        bigquery.Table(f"{PROJECT}.{dataset}.types", schema=_fields()), timeout=20, retry=R
    )
    assert bq.insert_rows_json(types, TYPE_ROWS, timeout=20, retry=R) == []

    big = bigquery.Table(
        f"{PROJECT}.{dataset}.events",
        schema=[bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("day", "DATE"),
                bigquery.SchemaField("user", "STRING"), bigquery.SchemaField("amount", "NUMERIC")],
    )  # fmt: skip
    big.time_partitioning = bigquery.TimePartitioning(field="day", type_="DAY")
    big.clustering_fields = ["user"]
    big.labels, big.description = {"tier": "gold"}, "partitioned and clustered"
    bq.create_table(big, timeout=20, retry=R)
    bq.query(
        f"INSERT INTO `{PROJECT}.{dataset}.events` (id, day, user, amount) "
        f"SELECT x, DATE_ADD(DATE '2024-01-01', INTERVAL MOD(x, 30) DAY), CONCAT('u', CAST(MOD(x, 17) AS STRING)), "
        f"CAST(x AS NUMERIC) / 100 FROM UNNEST(GENERATE_ARRAY(1, {BIG_ROWS})) AS x",
        timeout=20,
    ).result(timeout=60, retry=R)
    bq.create_table(bigquery.Table(f"{PROJECT}.{dataset}.empty", schema=_fields()[:4]), timeout=20, retry=R)
    v1 = bigquery.Table(f"{PROJECT}.{dataset}.big_spenders")
    v1.view_query = f"SELECT user, amount FROM `{PROJECT}.{dataset}.events` WHERE amount > 10"
    bq.create_table(v1, timeout=20, retry=R)
    v2 = bigquery.Table(f"{PROJECT}.{dataset}.a_top_users")  # sorts before the view it reads
    v2.view_query = f"SELECT DISTINCT user FROM `{PROJECT}.{dataset}.big_spenders`"
    bq.create_table(v2, timeout=20, retry=R)


def canonical(value: Any) -> Any:
    """A comparable form of a value read back from BigQuery (NaN equal to NaN, JSON parsed)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, Decimal):
        return str(value.normalize())
    return value


def rows_of(bq: Any, dataset: str, table: str) -> list[str]:
    """Every row of a table, canonical and sorted: equal lists mean equal tables row for row."""
    from blocks.clients import bigquery_read_client

    arrow = bq.list_rows(f"{PROJECT}.{dataset}.{table}", timeout=20).to_arrow(
        bqstorage_client=bigquery_read_client()
    )
    return sorted(json.dumps(canonical(r), sort_keys=True, default=repr) for r in arrow.to_pylist())


def query_value(bq: Any, sql: str) -> Any:
    return list(bq.query(sql, timeout=20).result(timeout=30, retry=R))[0][0]


@pytest.fixture
def dataset(bq: Any) -> Any:
    name = unique("bqsrc").replace("-", "_")
    seed(bq, name)
    yield name
    for ds in [d.dataset_id for d in bq.list_datasets(timeout=20) if d.dataset_id.startswith(name)]:
        bq.delete_dataset(ds, delete_contents=True, not_found_ok=True, timeout=20)


def test_round_trip_every_type_schema_partitioning_and_views(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    manifest = bq_component.backup(settings, store, dataset)
    tables = {e.name: e for e in manifest.entries}
    assert (
        tables["events"].rows == BIG_ROWS
        and tables["types"].rows == len(TYPE_ROWS)
        and tables["empty"].rows == 0
    )
    assert tables["big_spenders"].metadata["kind"] == "view"
    assert manifest.source_state["snapshot_time"] == manifest.started_at.isoformat()
    assert store.stat(tables["events"].stored_key).size == tables["events"].size

    validated = bq_component.validate(settings, store, manifest, 100)
    assert validated.status == "validated"

    target = dataset + "_restored"
    plan = bq_component.restore(settings, store, validated, target=target, dry_run=True)
    assert [a.get("table") for a in plan.actions][-2:] == ["big_spenders", "a_top_users"]  # dependency order
    assert plan.actions[0] == {
        "name": f"{PROJECT}.{target}",
        "change": "create",
        "kind": "dataset",
        "action": "create dataset",
    }
    assert bq.list_datasets(timeout=20) and target not in {d.dataset_id for d in bq.list_datasets(timeout=20)}

    report = bq_component.restore(settings, store, validated, target=target)
    assert report.created == 1 + 5  # the dataset, its tables and views
    for table in ("types", "events", "empty"):
        assert rows_of(bq, target, table) == rows_of(bq, dataset, table), table
    out = bq.get_table(f"{target}.events")
    assert out.time_partitioning.field == "day" and out.clustering_fields == ["user"]
    assert out.labels == {"tier": "gold"} and out.description == "partitioned and clustered"
    assert [f.to_api_repr() for f in bq.get_table(f"{target}.types").schema] == [
        f.to_api_repr() for f in bq.get_table(f"{dataset}.types").schema
    ]
    assert query_value(bq, f"SELECT COUNT(*) FROM `{PROJECT}.{target}.a_top_users`") == 17
    sql = query_value(
        bq,
        f"SELECT view_definition FROM `{PROJECT}.{target}`.INFORMATION_SCHEMA.VIEWS WHERE table_name = 'a_top_users'",
    )
    assert (
        f"{target}.big_spenders" in sql and f".{dataset}." not in sql
    )  # the view reads the restored dataset
    restored_ds = bq.get_dataset(target)
    assert restored_ds.labels == {"team": "data"} and restored_ds.description == "seeded by the tests"
    assert bq_component.check_restored(settings, store, validated, target) == []

    scratch = bq_component.scratch_target(validated, "x1")
    assert scratch == f"{dataset}__drill_x1"
    bq_component.remove_target(settings, target)
    assert target not in {d.dataset_id for d in bq.list_datasets(timeout=20)}


def test_corrupted_parquet_is_caught_naming_the_table(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    manifest = bq_component.backup(settings, store, dataset, tables=["events", "types"])
    entry = next(e for e in manifest.entries if e.name == "events")
    data = bytearray(store.get_bytes(entry.stored_key))
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    store.put_bytes(entry.stored_key, bytes(data))
    with pytest.raises(ValidationFailed, match="events") as caught:
        bq_component.validate(settings, store, manifest, 0)
    assert all("types" not in p for p in caught.value.problems)
    assert store.read_manifest(manifest.path).status == "invalid"


def test_validation_reports_source_that_differs_from_backup(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    manifest = bq_component.backup(settings, store, dataset, tables=["events"])
    bq.query(f"UPDATE `{PROJECT}.{dataset}.events` SET user = 'changed' WHERE id <= 1000", timeout=20).result(
        timeout=30
    )
    # The emulator reads the current table for the sample (it ignores snapshot_time), so a changed
    # source shows as sampled rows that differ; row counts at backup time still match.
    with pytest.raises(ValidationFailed, match="events.*sampled rows differ"):
        bq_component.validate(settings, store, manifest, 100)


def test_unknown_dataset_table_and_backup_id(bq: Any, settings: Any, store: Any, dataset: str) -> None:
    with pytest.raises(NotFound, match="no_such_dataset"):
        bq_component.backup(settings, store, "no_such_dataset")
    with pytest.raises(NotFound, match="no_such_table"):
        bq_component.backup(settings, store, dataset, tables=["no_such_table"])
    with pytest.raises(InvalidInput, match="malformed dataset"):
        bq_component.backup(settings, store, "bad-name!")
    assert index.list_manifests(store, "bigquery") == []
    with pytest.raises(NotFound, match="20200101T000000Z-abcdef"):
        resolve_backup(store, "bigquery", dataset, backup_id="20200101T000000Z-abcdef")
    manifest = bq_component.backup(settings, store, dataset, tables=["types"])
    with pytest.raises(NotFound, match="events"):
        bq_component.restore(settings, store, manifest, target=dataset + "_x", only=["events"])


def test_restore_refuses_to_overwrite_then_overwrites_when_asked(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    manifest = bq_component.backup(settings, store, dataset, tables=["events", "types", "empty"])
    before = rows_of(bq, dataset, "events")
    bq.query(f"DELETE FROM `{PROJECT}.{dataset}.events` WHERE id > 100", timeout=20).result(timeout=30)
    with pytest.raises(Conflict, match="events") as caught:
        bq_component.restore(settings, store, manifest)
    # only what differs is refused: "types" is as backed up (unchanged), "empty" holds no rows
    assert "types" not in str(caught.value) and "empty," not in str(caught.value)
    assert query_value(bq, f"SELECT COUNT(*) FROM `{PROJECT}.{dataset}.events`") == 100  # nothing written

    report = bq_component.restore(settings, store, manifest, only=["events"], overwrite=True, yes=True)
    assert report.overwritten == 1 and report.approval
    assert rows_of(bq, dataset, "events") == before


def test_schema_only_restore_creates_empty_tables(bq: Any, settings: Any, store: Any, dataset: str) -> None:
    manifest = bq_component.backup(settings, store, dataset)
    target = dataset + "_schema"
    bq_component.restore(settings, store, manifest, target=target, schema_only=True)
    events = bq.get_table(f"{target}.events")
    assert events.time_partitioning.field == "day" and events.num_rows == 0
    assert query_value(bq, f"SELECT COUNT(*) FROM `{PROJECT}.{target}.big_spenders`") == 0


@pytest.mark.flow
def test_flows_backup_validate_restore(
    bq: Any, saved_settings: str, settings: Any, store: Any, dataset: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.bigquery import backup_bigquery, restore_bigquery, validate_bigquery

    (row,) = backup_bigquery([dataset], settings_block=saved_settings)
    assert (row["source"], row["status"], row["views"]) == (dataset, "validated", 2)
    backup_id = row["backup_id"]
    tables = index.find(store, backup_id).source_state["tables"]
    assert tables == {"empty": 0, "events": BIG_ROWS, "types": 4}
    (checked,) = validate_bigquery(backup_id=backup_id, sample_percent=50, settings_block=saved_settings)
    assert checked["status"] == "validated" and checked["read_back"] > 0
    plan = restore_bigquery(dataset, before="2200-01-01", target=dataset + "_f", dry_run=True,
                            settings_block=saved_settings)  # fmt: skip
    assert plan["dry_run"] and len([a for a in plan["actions"] if "table" in a]) == 5
    done = restore_bigquery(dataset, backup_id=backup_id, target=dataset + "_f", only=["events"],
                            settings_block=saved_settings)  # fmt: skip
    assert done["created"] == 1 + 1  # the dataset and the table
    assert rows_of(bq, dataset + "_f", "events") == rows_of(bq, dataset, "events")
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["bigquery-backup-summary"]))
        )
    assert any(backup_id in json.dumps(a.data) for a in found)
    with pytest.raises(NotFound, match="20200101T000000Z-abcdef"):
        restore_bigquery(dataset, backup_id="20200101T000000Z-abcdef", settings_block=saved_settings)


def test_storage_api_down_fails_the_backup_with_no_manifest(
    bq: Any, settings: Any, store: Any, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backstop.core.errors import Unavailable
    from localdev.platform import free_port
    from tasks.components.bigquery import data as bigquery_io

    monkeypatch.setenv("BIGQUERY_STORAGE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setattr(bigquery_io, "RETRY", Retry(initial=0.1, maximum=0.2, timeout=1.0))
    with pytest.raises(Unavailable, match=dataset):
        bq_component.backup(settings, store, dataset, tables=["events"])
    assert index.list_manifests(store, "bigquery") == []
    assert store.in_progress("bigquery", dataset) == []


@pytest.mark.flow
def test_cli_backup_and_restore_plan(
    bq: Any, saved_settings: str, dataset: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from backstop_cli.main import main

    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))
    assert main(["--settings", saved_settings, "backup", "bigquery", "--dataset", dataset, "--table", "types",
                 "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["source"] == dataset and rows[0]["status"] == "validated"
    table = bq.get_table(f"{PROJECT}.{dataset}.types")
    table.description = "changed after the backup"  # the source table now differs from the backup
    bq.update_table(table, ["description"])
    args = ["--settings", saved_settings, "restore", "bigquery", "--dataset", dataset, "--backup-id",
            rows[0]["backup_id"], "--dry-run"]  # fmt: skip
    assert main([*args, "--json"]) == 0  # the plan shows the conflict with the changed source table
    assert json.loads(capsys.readouterr().out)["conflicts"] == 1
    assert main(args[:-1]) == 2  # and the restore itself refuses it before writing anything
    assert "types" in capsys.readouterr().err
    assert main([*args, "--target", dataset + "_cli", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (
        plan["dry_run"] and plan["actions"][1]["table"] == "types" and plan["actions"][0]["kind"] == "dataset"
    )
    assert main(["--settings", saved_settings, "restore", "bigquery", "--dataset", "bad-name!"]) == 2
    assert "malformed dataset" in capsys.readouterr().err


def test_big_table_is_split_into_part_files_and_restored_whole(
    bq: Any, settings: Any, store: Any, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.components.bigquery import data as bigquery_io

    monkeypatch.setattr(bigquery_io, "PART_ROWS", 1000)
    manifest = bq_component.backup(settings, store, dataset, tables=["events"])
    parts = sorted(
        e.stored_key.rsplit("/", 1)[1] for e in manifest.entries if e.stored_key.endswith(".parquet")
    )
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert manifest.source_state["tables"] == {"events": BIG_ROWS}
    from tasks.components.bigquery.digest import combined

    groups = [
        g for e in manifest.entries if e.stored_key.endswith(".parquet") for g in e.metadata["group_digests"]
    ]
    table = next(e for e in manifest.entries if e.name == "events")
    assert len(groups) >= 3 and combined(groups) == table.metadata["content_digest"]
    validated = bq_component.validate(settings, store, manifest, 0)  # footers only, no data read
    validated = bq_component.validate(settings, store, validated, 100)
    report = bq_component.restore(settings, store, validated, target=dataset + "_parts")
    assert report.created == 1 + 1  # the dataset and the table
    assert rows_of(bq, dataset + "_parts", "events") == rows_of(bq, dataset, "events")
    assert bq_component.check_restored(settings, store, validated, dataset + "_parts") == []


def test_validation_right_after_a_backup_reads_back_only_its_sampled_row_groups(
    bq: Any, settings: Any, store: Any, dataset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.components.bigquery import data as bigquery_io
    from tasks.components.bigquery import stored_parquet
    from tasks.components.bigquery.restore import parts_of, validate_table

    # a stored Parquet file of 4 row groups: one read back by range, the others left as zeros
    whole, sparse = tmp_path / "whole.parquet", tmp_path / "sparse.parquet"
    pq.write_table(
        pa.table({"id": range(4000), "name": [f"u{i}" for i in range(4000)]}), whole, row_group_size=1000
    )
    key = f"scratch/{unique('rg')}.parquet"
    stored = store.put_file(key, str(whole))
    assert (
        stored_parquet.fetch_row_groups(store, key, [2], str(sparse))
        == store.stat(key).crc32c
        == stored.crc32c
    )
    assert pq.ParquetFile(sparse).read_row_group(2).equals(pq.ParquetFile(whole).read_row_group(2))
    start, end = stored_parquet.row_group_span(pq.read_metadata(sparse), 0)  # a group not read back
    assert sparse.read_bytes()[start:end] == bytes(end - start) != whole.read_bytes()[start:end]
    assert sparse.stat().st_size == whole.stat().st_size

    monkeypatch.setattr(bigquery_io, "PART_ROWS", 1000)
    manifest = bq_component.backup(settings, store, dataset, tables=["events"])
    table = next(e for e in manifest.entries if e.name == "events")
    part = parts_of(manifest, table)[1]
    store.get_file(part.stored_key, str(whole))
    assert validate_table(settings, store, manifest, table, 5.0, compare_source=False) == []
    # other bytes of the same size (a byte flipped in the file's first data page, never read back
    # when another group is sampled): named by the crc32c the bucket reports
    data = bytearray(whole.read_bytes())
    data[8] ^= 0xFF
    store.put_bytes(part.stored_key, bytes(data))
    problems = validate_table(settings, store, manifest, table, 5.0, compare_source=False)
    assert len(problems) == 1 and part.stored_key in problems[0] and "another crc32c" in problems[0]
    # the same rows stored as a file of another size: named with both sizes
    pq.write_table(pq.read_table(whole), tmp_path / "other.parquet", compression="snappy")
    store.put_file(part.stored_key, str(tmp_path / "other.parquet"))
    problems = validate_table(settings, store, manifest, table, 5.0, compare_source=False)
    assert len(problems) == 1 and f"bytes, the backup wrote {part.size}" in problems[0]


def test_point_in_time_restore_straight_from_bigquery(bq: Any, settings: Any, dataset: str) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    from tasks.components.bigquery.timetravel import restore_as_of

    before = rows_of(bq, dataset, "events")
    time.sleep(1.1)
    moment = datetime.now(UTC)
    time.sleep(1.1)
    bq.query(f"DELETE FROM `{PROJECT}.{dataset}.events` WHERE id > 10", timeout=20).result(timeout=30)
    plan = restore_as_of(settings, dataset, moment, only=["events", "big_spenders"], dry_run=True)
    assert plan.actions[0]["rows"] == BIG_ROWS
    assert plan.target == f"{dataset}_restored_{moment:%Y%m%dT%H%M%S}" and [
        a["table"] for a in plan.actions
    ] == [
        "events",
        "big_spenders",
    ]
    report = restore_as_of(
        settings, dataset, moment, target=dataset + "_pit", only=["events", "big_spenders"]
    )
    assert report.created == 2
    assert rows_of(bq, dataset + "_pit", "events") == before
    assert bq.get_table(f"{dataset}_pit.events").time_partitioning.field == "day"
    with pytest.raises(Conflict, match="events"):
        restore_as_of(settings, dataset, moment, target=dataset + "_pit", only=["events"])
    with pytest.raises(InvalidInput, match="time-travel window"):
        restore_as_of(
            settings, dataset, moment - timedelta(days=30), target=dataset + "_old", only=["events"]
        )
    with pytest.raises(InvalidInput, match="is in the future"):
        restore_as_of(settings, dataset, moment + timedelta(days=1), target=dataset + "_next")
    with pytest.raises(NotFound, match=f"BigQuery dataset {PROJECT}.no_such_dataset: not found"):
        restore_as_of(settings, "no_such_dataset", moment, target=dataset + "_none")
    bq.create_dataset(f"{PROJECT}.{dataset}_empty", timeout=20)
    with pytest.raises(NotFound, match="holds no table or view: nothing to restore"):
        restore_as_of(settings, dataset + "_empty", moment, target=dataset + "_none")


def test_restore_drill_restores_verifies_and_removes_the_scratch_dataset(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    from tasks.engine.drill import drill

    manifest = bq_component.backup(settings, store, dataset, tables=["events", "types", "big_spenders"])
    bq_component.validate(settings, store, manifest, 10)
    result = drill("bigquery", settings, dataset, store=store, record=False)
    assert result.passed, result.problems
    assert result.target and result.target.startswith(f"{dataset}__drill_")
    assert result.target not in {d.dataset_id for d in bq.list_datasets(timeout=20)}


def test_avro_round_trip_every_main_type_and_corrupted_avro_is_caught(
    bq: Any, settings: Any, store: Any
) -> None:
    from google.cloud import bigquery

    from backstop.core.errors import ValidationFailed as Failed

    dataset = unique("bqavro").replace("-", "_")
    bq.create_dataset(f"{PROJECT}.{dataset}", timeout=20, retry=R)
    # TIME sits in its own table: bqemulator cannot load NUMERIC and TIME from one Avro file.
    tables = {
        "types": ([f for f in _fields() if f.name != "t"], [{k: v for k, v in r.items() if k != "t"} for r in TYPE_ROWS]),
        "clock": ([f for f in _fields() if f.name in ("id", "t", "d", "a")], [{k: r[k] for k in ("id", "t", "d", "a") if k in r} for r in TYPE_ROWS]),
        "empty": (_fields()[:4], []),
    }  # fmt: skip
    try:
        for name, (fields, rows) in tables.items():
            table = bq.create_table(bigquery.Table(f"{PROJECT}.{dataset}.{name}", schema=fields), timeout=20)
            if rows:
                assert bq.insert_rows_json(table, rows, timeout=20, retry=R) == []
        manifest = bq_component.backup(settings, store, dataset, format="avro")
        entries = {e.name: e for e in manifest.entries if e.metadata.get("kind") == "table"}
        assert manifest.options["format"] == "avro"
        assert {n: (e.stored_key.rsplit("/", 2)[-2:], e.rows, e.metadata["format"]) for n, e in entries.items()} == {
            n: ([n, "part-00000.avro"], len(rows), "avro") for n, (_, rows) in tables.items()
        }  # fmt: skip
        validated = bq_component.validate(settings, store, manifest, 100)
        assert validated.status == "validated"

        target = dataset + "_restored"
        report = bq_component.restore(settings, store, validated, target=target)
        assert report.created == 1 + 3  # the dataset and its tables
        for name in tables:
            assert rows_of(bq, target, name) == rows_of(bq, dataset, name), name
        assert bq_component.check_restored(settings, store, validated, target) == []

        data = bytearray(store.get_bytes(entries["types"].stored_key))
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0xFF
        store.put_bytes(entries["types"].stored_key, bytes(data))
        with pytest.raises(Failed, match="types") as caught:
            bq_component.validate(settings, store, manifest, 0)
        assert all("clock" not in p for p in caught.value.problems)
        assert store.read_manifest(manifest.path).status == "invalid"
    finally:
        for ds in (dataset, dataset + "_restored"):
            bq.delete_dataset(ds, delete_contents=True, not_found_ok=True, timeout=20)


def test_a_newer_backup_of_one_table_is_laid_over_the_whole_dataset(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    """Nightly the whole dataset, hourly `--table events`: a restore of the dataset takes events from
    the hourly backup and every other table and view from the nightly one."""
    from tasks.engine import restore
    from tasks.engine.protocol import RestoreRequest

    whole = bq_component.backup(settings, store, dataset, validate_after=True)
    types_then = rows_of(bq, dataset, "types")
    bq.query(f"DELETE FROM `{PROJECT}.{dataset}.events` WHERE id > 2000", timeout=20).result(timeout=60)
    part = bq_component.backup(settings, store, dataset, tables=["events"], validate_after=True)
    events_then = rows_of(bq, dataset, "events")
    bq.query(f"DELETE FROM `{PROJECT}.{dataset}.types` WHERE id > 1", timeout=20).result(timeout=60)
    assert len(events_then) == 2000 and rows_of(bq, dataset, "types") != types_then

    target = dataset + "_laid"
    report = restore.restore("bigquery", settings, RestoreRequest(source=dataset, target=target), store=store)
    assert report.backup_id == f"{part.backup_id}, {whole.backup_id}"
    assert report.created == 6  # the dataset, three tables and two views: each once
    assert rows_of(bq, target, "events") == events_then  # from the hourly backup (2,000 rows)
    assert rows_of(bq, target, "types") == types_then  # from the nightly one
    assert query_value(bq, f"SELECT COUNT(*) FROM `{PROJECT}.{target}.big_spenders`") == query_value(
        bq, f"SELECT COUNT(*) FROM `{PROJECT}.{dataset}.big_spenders`"
    )  # the view over events, from the nightly backup
    assert {p: c["backup_id"] for p, c in report.parts.items()} == {
        "all": whole.backup_id,
        "events": part.backup_id,
    }
