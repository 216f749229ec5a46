"""The composer component's options, its noun and its part: what the command line's flags and the
Prefect UI's run form are built from (light: pydantic, no Google client or Prefect import)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backstop.core.forms import OPTIONS_CONFIG

NOUN, PART = "environment", "part"


class ComposerOptions(BaseModel):
    """Options of Cloud Composer backups and restores."""

    model_config = OPTIONS_CONFIG

    parts: list[Literal["dags", "metadata", "config"]] | None = Field(
        default=None,
        description="Parts to back up (default all three).",
        json_schema_extra={"flag": "part", "verbs": ["backup"]},
    )
    snapshot: bool | None = Field(
        default=None,
        description="Also save a Composer snapshot (default: settings).",
        json_schema_extra={"verbs": ["backup"]},
    )


Options = ComposerOptions
