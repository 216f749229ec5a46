"""The gke component's options, its noun and its part: what the command line's flags and the
Prefect UI's run form are built from (light: pydantic, no Google client or Prefect import)."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from backstop.core.forms import OPTIONS_CONFIG
from tasks.components.gke.plans import GkeSettings, parse_renames, parse_resources

NOUN, PART = "cluster", "namespace"


class GkeOptions(BaseModel):
    """Options of GKE backups and restores."""

    model_config = OPTIONS_CONFIG | ConfigDict(populate_by_name=True)

    gke_config: GkeSettings | None = Field(
        default=None,
        description="GKE settings instead of the block's `gke`.",
        json_schema_extra={"form": False},
        validation_alias=AliasChoices("gke_config", "gke"),
    )
    rename: dict[str, str] | None = Field(
        default=None, description="Namespace renames old=new.", json_schema_extra={"verbs": ["restore"]}
    )
    resources: list[str] | None = Field(
        default=None,
        description="Restore only these objects: 'namespace/Kind/name' or 'Kind/name'.",
        json_schema_extra={"flag": "resource", "verbs": ["restore"]},
    )

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: list[str] | None) -> list[str] | None:
        parse_resources(value)  # raises InvalidInput naming the malformed one
        return value

    @field_validator("rename", mode="before")
    @classmethod
    def _rename(cls, value: Any) -> dict[str, str] | None:
        return parse_renames(value) if value else None


Options = GkeOptions
