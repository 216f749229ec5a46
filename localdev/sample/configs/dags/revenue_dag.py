"""Daily revenue aggregation (demo DAG)."""
from datetime import datetime

from common.helpers import sql_path

try:
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator
except ImportError:
    DAG = None

if DAG is not None:
    with DAG("daily_revenue", start_date=datetime(2026, 1, 1), schedule="30 2 * * *") as dag:
        EmptyOperator(task_id="aggregate", doc=sql_path("revenue.sql"))
