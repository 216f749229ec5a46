"""The one small protocol every component implements, and the registry of components.

The protocol is plain Python (no Prefect): the contract test suite, restore drills and the CLI use
it directly; flows compose finer-grained tasks from the same module functions where batching or
progress needs it. A component's `backup` commits its manifest (via tasks.catalog.commit_backup)
and never leaves a manifest for an incomplete run.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from backstop.errors import InvalidInput
from backstop.manifest import BackupManifest
from blocks.settings import BackstopSettings
from tasks.store import BackupStore


@dataclass
class RestoreReport:
    """What a restore did (or, with dry_run, would do)."""

    component: str
    source: str
    backup_id: str
    target: str
    dry_run: bool = False
    created: int = 0
    overwritten: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    from_secondary: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "source": self.source,
            "backup_id": self.backup_id,
            "target": self.target,
            "dry_run": self.dry_run,
            "created": self.created,
            "overwritten": self.overwritten,
            "unchanged": self.unchanged,
            "conflicts": len(self.conflicts),
            "seconds": round(self.seconds, 3),
            "from_secondary": self.from_secondary,
        }


class Component(Protocol):
    """backup / validate / restore / scratch targets for one kind of source."""

    name: str

    def backup(
        self, settings: BackstopSettings, store: BackupStore, source: str, **options: Any
    ) -> BackupManifest:
        """Take a backup of `source`, commit its manifest last, return it."""
        ...

    def validate(
        self, settings: BackstopSettings, store: BackupStore, manifest: BackupManifest, sample_percent: float
    ) -> BackupManifest:
        """Check the backup against its manifest and the source; record the outcome; raise ValidationFailed."""
        ...

    def restore(
        self,
        settings: BackstopSettings,
        store: BackupStore,
        manifest: BackupManifest,
        target: str | None = None,
        only: list[str] | None = None,
        overwrite: bool = False,
        dry_run: bool = False,
    ) -> RestoreReport:
        """Restore all of `manifest` (or the parts in `only`) to `target` (default: the source)."""
        ...

    def verify_restored(
        self, settings: BackstopSettings, store: BackupStore, manifest: BackupManifest, target: str
    ) -> list[str]:
        """Compare what is at `target` with the manifest; return the differences (drills use this)."""
        ...

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        """An isolated target name for a restore drill."""
        ...

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        """Delete a scratch target made by a drill."""
        ...


COMPONENTS: dict[str, str] = {
    "gcs": "tasks.gcs:COMPONENT",
    "composer": "tasks.composer:COMPONENT",
    "configs": "tasks.configs:COMPONENT",
    "gke": "tasks.gke:COMPONENT",
    "bigquery": "tasks.bigquery:COMPONENT",
}


def get_component(name: str) -> Component:
    """The registered component `name`; InvalidInput lists the known ones."""
    if name not in COMPONENTS:
        raise InvalidInput(f"unknown component {name!r}: choose one of {', '.join(sorted(COMPONENTS))}")
    module, attr = COMPONENTS[name].split(":")
    component: Component = getattr(importlib.import_module(module), attr)
    return component
