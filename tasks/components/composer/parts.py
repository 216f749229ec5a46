"""Cloud Composer's parts and options: what a backup holds, how entries map to parts, the options
model (tasks/components/composer/component.py is the component)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backstop.core.errors import InvalidInput
from backstop.core.manifest import ManifestEntry
from blocks.components import ComposerSettings
from blocks.settings import BackstopSettings
from tasks.engine.protocol import OPTIONS_CONFIG

PARTS = ("dags", "metadata", "config")
SNAPSHOT_FILE = "composer/snapshot.json"


def composer_settings(settings: BackstopSettings) -> ComposerSettings:
    raw = getattr(settings, "composer", None)
    return raw if isinstance(raw, ComposerSettings) else ComposerSettings.model_validate(raw or {})


def part_of(entry: ManifestEntry) -> str:
    if entry.name.startswith("airflow/"):
        return "metadata"
    if entry.name == SNAPSHOT_FILE:
        return "snapshot"
    return "config" if entry.name.startswith("composer/") else "dags"


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


def check_parts(parts: list[str], allow_snapshot: bool = False) -> list[str]:
    known = (*PARTS, "snapshot") if allow_snapshot else PARTS
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise InvalidInput(f"unknown composer part(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return list(dict.fromkeys(parts))
