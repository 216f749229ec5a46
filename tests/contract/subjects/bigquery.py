"""The contract subject of the bigquery component (see tests/contract/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localdev.platform import PROJECT
from tests.conftest import unique

GKE_LOCATION = "us-central1"
COMPOSER_PARENT = "projects/backstop-demo/locations/europe-west1"


class BigQuerySubject:
    """A dataset with two tables (people, and orders beside it); an exact restore's scope is the
    dataset."""

    component = "bigquery"
    # a name `only` takes that the seeded backup does not hold (a table)
    absent_part = "no_such_table"
    scope_options: dict[str, Any] | None = None
    # a backup of part of the dataset (laid over one of the whole), and what `only` names inside it
    subset_options: dict[str, Any] | None = {"tables": ["people"]}
    within_subset = ["people"]
    spanning_subset: list[str] | None = ["people", "orders"]  # orders: only in the whole backup

    def __init__(self, bq: Any, settings: Any) -> None:
        self.bq, self.settings = bq, settings

    def seed(self) -> str:
        from google.cloud import bigquery

        dataset = unique("ds").replace("-", "_")
        ds = bigquery.Dataset(f"{PROJECT}.{dataset}")
        ds.labels = {"team": "data"}
        self.bq.create_dataset(ds, timeout=20)
        schema = [bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("name", "STRING")]
        table = self.bq.create_table(bigquery.Table(f"{PROJECT}.{dataset}.people", schema=schema), timeout=20)
        assert (
            self.bq.insert_rows_json(table, [{"id": i, "name": f"n{i}"} for i in range(20)], timeout=20) == []
        )
        orders = self.bq.create_table(
            bigquery.Table(f"{PROJECT}.{dataset}.orders", schema=[bigquery.SchemaField("id", "INT64")]),
            timeout=20,
        )
        assert self.bq.insert_rows_json(orders, [{"id": i} for i in range(3)], timeout=20) == []
        return dataset

    def state(self, where: str) -> Any:
        rows = self.bq.query(f"SELECT id, name FROM `{PROJECT}.{where}.people` ORDER BY id").result(
            timeout=30
        )
        tables = sorted(t.table_id for t in self.bq.list_tables(f"{PROJECT}.{where}", timeout=20))
        description = self.bq.get_table(f"{PROJECT}.{where}.people", timeout=20).description
        orders = (
            [
                r[0]
                for r in self.bq.query(f"SELECT id FROM `{PROJECT}.{where}.orders` ORDER BY id").result(
                    timeout=30
                )
            ]
            if "orders" in tables
            else None
        )
        return tables, [tuple(r.values()) for r in rows], description, orders

    def change(self, source: str) -> None:
        self.bq.query(f"DELETE FROM `{PROJECT}.{source}.people` WHERE id < 5").result(timeout=30)

    def change_one_kind(self, source: str) -> None:
        """Metadata only: the table's description, not a row."""
        table = self.bq.get_table(f"{PROJECT}.{source}.people", timeout=20)
        table.description = "changed after the backup"
        self.bq.update_table(table, ["description"], timeout=20)

    def _table(self, ref: str) -> None:
        from google.cloud import bigquery

        table = self.bq.create_table(
            bigquery.Table(ref, schema=[bigquery.SchemaField("id", "INT64")]), timeout=20
        )
        assert self.bq.insert_rows_json(table, [{"id": 1}], timeout=20) == []

    def add_in_scope(self, source: str) -> None:
        self._table(f"{PROJECT}.{source}.added_later")

    def add_outside_scope(self, source: str) -> None:
        from google.cloud import bigquery

        other = f"{source}_other"
        self.bq.create_dataset(bigquery.Dataset(f"{PROJECT}.{other}"), exists_ok=True, timeout=20)
        self._table(f"{PROJECT}.{other}.added_later")

    def change_in_subset(self, source: str) -> None:
        self.change(source)  # rows of people deleted

    def change_outside_subset(self, source: str) -> None:
        self._table(f"{PROJECT}.{source}.added_later")  # a table no backup of people holds

    def laid_over(self, whole: Any, part: Any) -> Any:
        """A backup of the whole dataset with a newer one of people laid over it: the tables of
        the whole one, the rows of people as the newer one has them."""
        tables, _, description, orders = whole
        return tables, part[1], description, orders

    def new_target(self, source: str) -> str:
        return unique("target").replace("-", "_")

    def gone(self, target: str) -> bool:
        return not list(d.dataset_id for d in self.bq.list_datasets(timeout=20) if d.dataset_id == target)

    def expire_outside_data(self, manifest: Any) -> None:
        """What BigQuery does when a snapshot table's expiration passes: it drops the table."""
        tables = [e.metadata["snapshot_table"] for e in manifest.entries if e.metadata.get("snapshot_table")]
        assert tables, "a snapshot-method backup keeps its table data in snapshot tables"
        for table in tables:
            self.bq.delete_table(table, timeout=20)


def make(request: pytest.FixtureRequest, gcs: Any, bq: Any, settings: Any) -> Iterator[BigQuerySubject]:
    yield BigQuerySubject(bq, settings)
