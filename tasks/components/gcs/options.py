"""The gcs component's options, its noun and its part: what the command line's flags and the
Prefect UI's run form are built from (light: pydantic, no Google client or Prefect import)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from backstop.core.forms import OPTIONS_CONFIG

NOUN, PART = "bucket", "object"


class GcsOptions(BaseModel):
    """Options of Cloud Storage backups."""

    model_config = OPTIONS_CONFIG

    prefixes: list[str] | None = Field(
        default=None,
        description="Back up only objects under these prefixes.",
        json_schema_extra={"flag": "prefix", "verbs": ["backup"]},
    )


Options = GcsOptions
