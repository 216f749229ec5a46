"""BigQuery table data on bqemulator: wide rows, content digests old and new, later backups after a snapshot."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from localdev.platform import PROJECT
from tasks.engine.calls import ComponentCalls
from tests.components.bigquery.test_bigquery import R, rows_of
from tests.components.bigquery.test_bigquery import dataset as dataset  # noqa: F401 - the seeded-dataset fixture
from tests.conftest import unique

bq_component = ComponentCalls("bigquery")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Retrieving Arrow record batches:PendingDeprecationWarning"),
]

WIDE_ROWS = 2_000


@pytest.fixture
def wide_dataset(bq: Any) -> Any:
    """A dataset whose table `wide` has rows of ~4 KB (8 MB in all: one read response over gRPC's 4 MB default)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    name = unique("bqwide").replace("-", "_")
    bq.create_dataset(f"{PROJECT}.{name}", timeout=20, retry=R)
    fields = [
        bigquery.SchemaField("id", "INT64"),
        bigquery.SchemaField("body", "STRING"),
        bigquery.SchemaField("blob", "BYTES"),
        bigquery.SchemaField("n", "NUMERIC"),
        bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
    ]
    bq.create_table(bigquery.Table(f"{PROJECT}.{name}.wide", schema=fields), timeout=20, retry=R)
    ids = range(WIDE_ROWS)
    data = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "body": pa.array([f"row {i} " + "ü✓" * 1000 + str(i) for i in ids], pa.string()),
            "blob": pa.array([bytes([i % 256]) * 1000 for i in ids], pa.binary()),
            "n": pa.array([None if i % 7 == 0 else f"{i}.{i:09d}" for i in ids], pa.string())
            .cast(pa.float64())
            .cast(pa.decimal128(38, 9)),
            "tags": pa.array([[f"t{i}", "x" * 50] for i in ids], pa.list_(pa.string())),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
    config.parquet_options = bigquery.ParquetOptions()
    config.parquet_options.enable_list_inference = True
    job = bq.load_table_from_file(buffer, f"{PROJECT}.{name}.wide", size=None, job_config=config, timeout=60)
    job.result(timeout=120, retry=R)
    yield name
    for ds in [d.dataset_id for d in bq.list_datasets(timeout=20) if d.dataset_id.startswith(name)]:
        bq.delete_dataset(ds, delete_contents=True, not_found_ok=True, timeout=20)


def test_table_with_rows_of_a_few_kb_backs_up_and_restores_row_for_row(
    bq: Any, settings: Any, store: Any, wide_dataset: str
) -> None:
    manifest = bq_component.backup(settings, store, wide_dataset)
    (entry,) = [e for e in manifest.entries if e.name == "wide"]
    assert entry.rows == WIDE_ROWS
    validated = bq_component.validate(settings, store, manifest, 100)
    assert validated.status == "validated"

    target = wide_dataset + "_restored"
    bq_component.restore(settings, store, validated, target=target)
    restored = rows_of(bq, target, "wide")
    assert len(restored) == WIDE_ROWS and restored == rows_of(bq, wide_dataset, "wide")
    assert bq_component.check_restored(settings, store, validated, target) == []


def test_a_table_read_in_more_streams_than_reader_threads_gives_every_row_once(
    bq: Any, wide_dataset: str
) -> None:
    """The service decides how many streams a table has; more than READ_THREADS are read in turn."""
    from blocks.clients import bigquery_read_client
    from tasks.components.bigquery import data as bqio
    from tasks.components.bigquery.digest import row_hashes
    from tasks.components.bigquery.schema import TableDigest

    def read(streams: int) -> tuple[TableDigest, list[int]]:
        digest, ids = TableDigest(), []
        for batch in bqio.read_batches(
            bigquery_read_client(), PROJECT, wide_dataset, "wide", streams=streams
        ):
            digest.add(row_hashes(batch))
            ids += batch.column("id").to_pylist()
        return digest, sorted(ids)

    from google.cloud.bigquery_storage_v1 import types

    session = bigquery_read_client().create_read_session(
        parent=f"projects/{PROJECT}",
        read_session=types.ReadSession(
            table=bqio.table_path(PROJECT, wide_dataset, "wide"), data_format=types.DataFormat.ARROW
        ),
        max_stream_count=2 * bqio.READ_THREADS - 1,
        timeout=30,
    )
    assert len(session.streams) == 2 * bqio.READ_THREADS - 1  # the table is split as asked: not vacuous
    one, seven = read(1), read(2 * bqio.READ_THREADS - 1)
    assert one[1] == seven[1] == list(range(WIDE_ROWS))
    assert one[0].hexdigest == seven[0].hexdigest


# What the code before digest scheme 2 (tasks.components.bigquery.schema.row_hashes, scheme 1) recorded as the
# content digests of the seeded tables (tests/integration/test_bigquery.py: seed).
SCHEME_1_DIGESTS = {
    "types": "4:52d10dee8bb61a18:c69090f2985069a4",
    "events": "3000:4ec357ae2c4e015a:4a6a10df1898de04",
}


def test_backup_recorded_with_the_old_digest_scheme_still_validates_and_verifies_its_restore(
    bq: Any, settings: Any, store: Any, dataset: str
) -> None:
    manifest = bq_component.backup(settings, store, dataset, tables=list(SCHEME_1_DIGESTS))
    assert {e.metadata.get("digest_scheme") for e in manifest.entries if e.name in SCHEME_1_DIGESTS} == {2}
    entries = []
    for entry in manifest.entries:  # as that code wrote them: scheme 1, no scheme or row-group digests
        if entry.name in SCHEME_1_DIGESTS:
            meta = {k: v for k, v in entry.metadata.items() if k not in ("digest_scheme", "group_digests")}
            entry = entry.model_copy(
                update={"metadata": meta | {"content_digest": SCHEME_1_DIGESTS[entry.name]}}
            )
        entries.append(entry)
    old = manifest.model_copy(update={"entries": entries})
    store.put_bytes(old.path, old.sealed().to_bytes(), content_type="application/json")
    old = store.read_manifest(old.path)
    assert [e.metadata.get("content_digest") for e in old.entries if e.name == "events"] == [
        SCHEME_1_DIGESTS["events"]
    ]

    validated = bq_component.validate(settings, store, old, 100)
    assert validated.status == "validated"
    target = dataset + "_old"
    bq_component.restore(settings, store, validated, target=target)
    for table in SCHEME_1_DIGESTS:
        assert rows_of(bq, target, table) == rows_of(bq, dataset, table), table
    assert bq_component.check_restored(settings, store, validated, target) == []
    # the old digest is really compared: one changed value in the restored table is reported
    bq.query(f"UPDATE `{PROJECT}.{target}.events` SET user = 'changed' WHERE id = 7", timeout=20).result(
        timeout=60, retry=R
    )
    assert bq_component.check_restored(settings, store, validated, target) == [
        "table 'events': restored content differs from the backup (content hash)"
    ]


@pytest.mark.flow
def test_readme_sequence_snapshot_then_avro_then_plain_backups_all_pass(
    bq: Any, saved_settings: str, dataset: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from backstop_cli.main import main

    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))
    backup = ["--settings", saved_settings, "backup", "bigquery", "--dataset", dataset, "--json"]
    done = []
    for extra in (
        ["--method", "snapshot"],
        ["--format", "avro"],
        [],
    ):  # README: `--method snapshot   # or --format avro`
        assert main([*backup, *extra]) == 0, (extra, capsys.readouterr().err)
        (row,) = json.loads(capsys.readouterr().out)
        assert row["status"] == "validated", extra
        done.append(row["backup_id"])
    assert len(set(done)) == 3
    # the last one restores row for row
    target = dataset + "_after"
    restore = ["--settings", saved_settings, "restore", "bigquery", "--dataset", dataset, "--backup-id", done[-1],
               "--target", target, "--json"]  # fmt: skip
    assert main(restore) == 0, capsys.readouterr().err
    capsys.readouterr()
    for table in ("types", "events", "empty"):
        assert rows_of(bq, target, table) == rows_of(bq, dataset, table), table
