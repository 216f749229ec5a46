"""Hourly ingestion of orders (demo DAG)."""
from datetime import datetime, timedelta

DEFAULT_ARGS = {"owner": "data", "retries": 2, "retry_delay": timedelta(minutes=5)}

try:
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator
except ImportError:  # the demo does not need Airflow installed
    DAG = None

if DAG is not None:
    with DAG("ingest_orders", start_date=datetime(2026, 1, 1), schedule="@hourly", default_args=DEFAULT_ARGS) as dag:
        start = EmptyOperator(task_id="start")
        load = EmptyOperator(task_id="load_orders")
        start >> load
