"""Helpers shared by the demo DAGs."""
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def sql_path(name: str) -> str:
    return str(SQL_DIR / name)
