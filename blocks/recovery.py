"""User-defined post-restore checks of a platform recovery (settings only, read by tasks/operations/recover_checks.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BigQueryCheck(BaseModel):
    """A query whose first value must equal `expected` once the dataset is restored."""

    dataset: str = Field(description="The backed-up dataset the check belongs to.")
    sql: str = Field(
        description="Query; `{dataset}` is replaced by the restored dataset (the original or an alternate target)."
    )
    expected: str = Field(description="Expected first value of the first row, compared as text (e.g. '20').")


class GcsPrefixCheck(BaseModel):
    """A prefix that must hold at least `min_objects` objects once the bucket is restored."""

    bucket: str = Field(description="The backed-up bucket the check belongs to.")
    prefix: str = Field(default="", description="Object name prefix ('' for the whole bucket).")
    min_objects: int = Field(default=1, ge=0, description="Fewest objects (folder placeholders not counted).")


class RecoveryChecks(BaseModel):
    """Checks run after each step of `backstop recover`, beyond each component's own verification."""

    bigquery: list[BigQueryCheck] = Field(default_factory=list, description="SQL checks per dataset.")
    gcs: list[GcsPrefixCheck] = Field(default_factory=list, description="Required prefixes per bucket.")
