"""Cloud Composer's parts and options: what a backup holds, how entries map to parts, the options
model (tasks/components/composer/component.py is the component)."""

from __future__ import annotations

from backstop.core.errors import InvalidInput
from backstop.core.manifest import ManifestEntry
from blocks.components import ComposerSettings
from blocks.settings import BackstopSettings

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


def check_parts(parts: list[str], allow_snapshot: bool = False) -> list[str]:
    known = (*PARTS, "snapshot") if allow_snapshot else PARTS
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise InvalidInput(f"unknown composer part(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return list(dict.fromkeys(parts))
