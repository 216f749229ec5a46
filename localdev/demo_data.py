"""Sample data for the demo: a bucket, a BigQuery dataset and a Composer environment.

Seeding talks to the local platform through the same client factory as Backstop itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any


def seed_bucket(client: Any, name: str, small: int = 2000, large: int = 3) -> dict[str, str]:
    """A sample data bucket: nested prefixes, custom metadata, spaces and non-ASCII names, MB objects."""
    from tasks.storage.parallel import parallel_map

    bucket = client.lookup_bucket(name) or client.create_bucket(name)
    items = []
    for i in range(small):
        day = f"dt=2026-11-{1 + i % 24:02d}"
        folder = ["events", "exports/partner ä", "raw/sensors/zone-β"][i % 3]
        items.append(
            (
                f"{folder}/{day}/part {i:05d}.json",
                (f'{{"id": {i}, "value": "{"x" * (i % 97)}"}}\n' * 8).encode(),
            )
        )
    for i in range(large):
        items.append(
            (f"models/checkpoint-{i}.bin", hashlib.sha256(str(i).encode()).digest() * (32768 * (i + 1)))
        )

    def put(item: tuple[str, bytes]) -> None:
        blob = bucket.blob(item[0])
        blob.metadata = {"source": "demo", "team": "data-platform"}
        blob.cache_control = "private, max-age=60"
        blob.upload_from_string(
            item[1], content_type="application/json" if item[0].endswith("json") else None
        )

    parallel_map(put, items, 16)
    bucket.blob("events/").upload_from_string(b"")  # a console-style folder placeholder
    return {n: hashlib.sha256(d).hexdigest() for n, d in items}


def bucket_digest(client: Any, name: str) -> dict[str, str]:
    """sha256 of every object's bytes, downloaded (the byte-for-byte check)."""
    from tasks.storage.parallel import parallel_map

    blobs = [b for b in client.list_blobs(name) if not b.name.endswith("/")]
    digests = parallel_map(lambda b: hashlib.sha256(b.download_as_bytes()).hexdigest(), blobs, 16)
    return {b.name: d for b, d in zip(blobs, digests, strict=True)}


DEMO_DATASET = "demo_sales"


def seed_dataset(client: Any, project: str, dataset: str, rows: int = 300_000) -> None:
    """A sample dataset: a partitioned + clustered table, a nested table and a view."""
    import tempfile

    import numpy as np
    import pandas as pd
    from google.cloud import bigquery

    from tasks.components.bigquery.data import load_parquet

    client.delete_dataset(f"{project}.{dataset}", delete_contents=True, not_found_ok=True)
    client.create_dataset(bigquery.Dataset(f"{project}.{dataset}"))
    orders = bigquery.Table(
        f"{project}.{dataset}.orders",
        schema=[
            bigquery.SchemaField("order_id", "INT64", mode="REQUIRED"),
            bigquery.SchemaField("customer_id", "INT64"),
            bigquery.SchemaField("order_ts", "TIMESTAMP"),
            bigquery.SchemaField("amount", "FLOAT64"),
            bigquery.SchemaField("status", "STRING"),
        ],
    )
    orders.time_partitioning = bigquery.TimePartitioning(field="order_ts")
    orders.clustering_fields = ["customer_id"]
    orders.labels = {"owner": "sales"}
    client.create_table(orders)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "order_id": np.arange(rows, dtype="int64"),
            "customer_id": rng.integers(0, 5_000, rows),
            "order_ts": pd.Timestamp("2026-11-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86400 * 20, rows), unit="s"),
            "amount": rng.random(rows).round(2) * 500,
            "status": rng.choice(["paid", "refunded", "pending", "geliefert ✓"], rows),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:  # through a Parquet file, as restores load
        path = f"{tmp}/orders.parquet"
        frame.to_parquet(path, index=False)
        load_parquet(client, path, f"{project}.{dataset}.orders")
    customers = bigquery.Table(
        f"{project}.{dataset}.customers",
        schema=[
            bigquery.SchemaField("customer_id", "INT64", mode="REQUIRED"),
            bigquery.SchemaField("name", "STRING"),
            bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
            bigquery.SchemaField(
                "address",
                "RECORD",
                fields=[
                    bigquery.SchemaField("city", "STRING"),
                    bigquery.SchemaField("zip", "STRING"),
                ],
            ),
        ],
    )
    client.create_table(customers)
    client.insert_rows_json(
        customers,
        [
            {
                "customer_id": i,
                "name": f"Kunde {i}",
                "tags": ["b2b"] if i % 2 else [],
                "address": {"city": ["Zürich", "Lyon", "Kraków"][i % 3], "zip": f"{1000 + i}"},
            }
            for i in range(500)
        ],
    )
    view = bigquery.Table(f"{project}.{dataset}.daily_revenue")
    view.view_query = (
        f"SELECT DATE(order_ts) AS day, SUM(amount) AS revenue FROM `{project}.{dataset}.orders` GROUP BY day"
    )
    client.create_table(view)


COMPOSER_PARENT = "projects/backstop-demo/locations/us-central1"
DEMO_DAGS = {
    "dags/etl_orders.py": b"from datetime import datetime\n\nDAG_ID = 'etl_orders'\nSTART = datetime(2026, 1, 1)\n",
    "dags/reports/weekly.py": b"DAG_ID = 'weekly_report'\nSCHEDULE = '@weekly'\n",
    "plugins/hooks/warehouse.py": b"class WarehouseHook:\n    pass\n",
    "data/lookup.csv": b"code,name\n1,one\n2,two\n",
}


def make_environment(client: Any, short: str, bucket: str, files: dict[str, bytes]) -> str:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud.orchestration.airflow import service_v1 as composer

    from blocks.clients import composer_client

    target = client.lookup_bucket(bucket) or client.create_bucket(bucket)
    for name, data in files.items():
        target.blob(name).upload_from_string(data)
    config = composer.EnvironmentConfig(
        dag_gcs_prefix=f"gs://{bucket}/dags",
        airflow_uri=os.environ["AIRFLOW_API_URL"].removesuffix("/api/v1"),
        software_config=composer.SoftwareConfig(
            image_version="composer-2.9.7-airflow-2.9.3", pypi_packages={"pandas": "==2.2.3"}
        ),
    )
    name = f"{COMPOSER_PARENT}/environments/{short}"
    environment = composer.Environment(name=name, config=config)
    with contextlib.suppress(AlreadyExists):  # a platform left running by an earlier demo
        composer_client().create_environment(
            parent=COMPOSER_PARENT, environment=environment, timeout=10
        ).result(timeout=30)
    return name
