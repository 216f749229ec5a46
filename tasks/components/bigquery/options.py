"""The bigquery component's options, its noun and its part: what the command line's flags and the
Prefect UI's run form are built from (light: pydantic, no Google client or Prefect import)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backstop.core.forms import OPTIONS_CONFIG

NOUN, PART = "dataset", "table"


class BigQueryOptions(BaseModel):
    """Options of BigQuery backups and restores."""

    model_config = OPTIONS_CONFIG

    tables: list[str] | None = Field(
        default=None,
        description="Back up only these tables and views.",
        json_schema_extra={"flag": "table", "verbs": ["backup"]},
    )
    method: Literal["read", "extract", "snapshot"] | None = Field(
        default=None,
        description="read (Storage Read API), extract (extract jobs), snapshot (table snapshots).",
        json_schema_extra={"verbs": ["backup"]},
    )
    format: Literal["parquet", "avro"] | None = Field(
        default=None, description="Table data format of method read.", json_schema_extra={"verbs": ["backup"]}
    )
    schema_only: bool = Field(
        default=False,
        description="Restore tables and views without data.",
        json_schema_extra={"verbs": ["restore"]},
    )


Options = BigQueryOptions
