"""Cloud Composer's parts and options: what a backup holds, how entries map to parts, the options
model (tasks/components/composer/component.py is the component)."""

from __future__ import annotations

from dataclasses import dataclass

from backstop.core.archive import matches
from backstop.core.errors import InvalidInput, NotFound
from backstop.core.manifest import ManifestEntry
from blocks.components import ComposerSettings
from blocks.settings import BackstopSettings

PARTS = ("dags", "metadata", "config")
SNAPSHOT_FILE = "composer/snapshot.json"
# The folders of the environment's bucket the dags part holds: `only` may name files in them.
BUCKET_FOLDERS = ("dags/", "plugins/", "data/")


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
        files = (
            " (or files of the environment's bucket: dags/..., plugins/..., data/...)"
            if allow_snapshot
            else ""
        )
        raise InvalidInput(
            f"unknown composer part(s) {', '.join(unknown)}: choose from {', '.join(known)}{files}"
        )
    return list(dict.fromkeys(parts))


def is_file_pattern(name: str) -> bool:
    """Whether a name `only` gives is files of the environment's bucket (dags/etl.py, plugins/,
    data/*.csv: part of the dags part), not a part."""
    return name.startswith(BUCKET_FOLDERS)


@dataclass(frozen=True)
class Selection:
    """What a restore of a Composer backup takes: whole parts, and of the dags part only the
    files `patterns` match when there are any (the patterns of configuration files,
    backstop/core/archive.py: a folder ends in /, `*` stays in one folder, `**` spans them)."""

    parts: list[str]
    patterns: list[str]

    def takes_file(self, name: str) -> bool:
        """Whether a file of the environment's bucket is selected (every one without patterns)."""
        return not self.patterns or matches(name, self.patterns)

    def takes(self, entry: ManifestEntry) -> bool:
        part = part_of(entry)
        return part in self.parts and (part != "dags" or self.takes_file(entry.name))

    def check_matched(self, entries: list[ManifestEntry], backup_id: str) -> None:
        """NotFound naming the patterns no entry of the backup matches (nothing restored for them)."""
        unmatched = [p for p in self.patterns if not any(matches(e.name, [p]) for e in entries)]
        if unmatched:
            raise NotFound(f"no file in backup {backup_id} matches {', '.join(map(repr, unmatched))}")


def selection(only: list[str] | None, allow_snapshot: bool = False) -> Selection:
    """The Selection `only` asks for (None: every part). Naming the dags part whole wins over
    patterns of its files."""
    named = [o for o in only or PARTS if not is_file_pattern(o)]
    patterns = [o for o in only or [] if is_file_pattern(o)]
    if "dags" in named:
        patterns = []
    elif patterns:
        named.append("dags")
    return Selection(check_parts(named, allow_snapshot), list(dict.fromkeys(patterns)))
