"""The configs component's options, its noun and its part: what the command line's flags and the
Prefect UI's run form are built from (light: pydantic, no Google client or Prefect import)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from backstop.core.forms import OPTIONS_CONFIG
from blocks.components import ConfigSource

NOUN, PART = "source", "file"


class ConfigsOptions(BaseModel):
    """Options of configuration file backups."""

    model_config = OPTIONS_CONFIG

    path: str | None = Field(
        default=None,
        description="Back up this local directory or gs://bucket/prefix as the source (ad hoc).",
        json_schema_extra={"verbs": ["backup"]},
    )
    config_source: ConfigSource | None = Field(
        default=None, description="A whole source definition (ad hoc).", json_schema_extra={"form": False}
    )


Options = ConfigsOptions
