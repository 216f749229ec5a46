"""Holds on what matters most: the manifest of the newest validated backup of every source.

Validation places a temporary hold on a manifest it marks validated (`BackupStore.write_manifest`
with `hold_validated`); prune moves the holds forward with `move_holds`: it makes sure the newest
validated backup of the source is held, and only then releases the holds on the manifests of every
other backup of that source. So at every moment the newest validated backup of a source is held
(from its validation on), and a hold leaves a backup only once a newer validated one holds it.

A held object cannot be deleted or replaced by anyone until the hold is released (an explicit
`storage.objects.update`), so a bad script or a wrong retention setting cannot remove the last
good backup. What is held: `manifest.json` and its update records (`_manifest/`); Backstop owns
the temporary holds on manifest objects and releases them, never holds on anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backstop.core.catalog_index import ManifestHeader
from backstop.core.manifest import MANIFEST_NAME, BackupManifest, select
from tasks.catalog import index
from tasks.storage.bucket import BackupStore
from tasks.storage.manifests import UPDATES_DIR


@dataclass
class HoldReport:
    """What `move_holds` did (or, with dry_run, would do) for one source."""

    held: str | None = None
    placed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def notes(self, dry_run: bool) -> list[str]:
        would = "would " if dry_run else ""
        out = []
        if self.held:
            now = "is held" if not self.placed else ("would be held" if dry_run else "is now held")
            out.append(f"hold: newest validated backup {self.held} {now}")
        if self.released:
            out.append(f"hold {would}released from {len(self.released)} older backup object(s)")
        return out


def _is_manifest_object(key: str) -> bool:
    return key.endswith("/" + MANIFEST_NAME) or f"/{UPDATES_DIR}" in key


def held_manifest_objects(listed: dict[str, Any]) -> set[str]:
    """The manifest objects (manifest.json and update records) under a temporary hold."""
    return {
        k for k, blob in listed.items() if _is_manifest_object(k) and getattr(blob, "temporary_hold", False)
    }


def move_holds(
    store: BackupStore,
    component: str,
    source: str,
    manifests: list[BackupManifest],
    dry_run: bool = False,
) -> HoldReport:
    """Hold the newest validated backup of `component`/`source`, then release every other hold.

    Nothing is released when no backup is validated or when placing the new hold failed.
    """
    report = HoldReport()
    newest = select(manifests, component, source, validated_only=True)
    if not newest:
        return report
    listed = store.list(f"{component}/{source}/")
    wanted = set(store.manifest_keys(newest[0], listed))
    held = held_manifest_objects(listed)
    report.held = newest[0].backup_id
    report.placed = sorted(wanted - held)
    report.released = sorted(held - wanted)
    if dry_run:
        return report
    report.problems = store.set_hold(report.placed, True)
    if report.problems:  # the newest is not held: keep the older holds
        report.released = []
        return report
    report.problems = store.set_hold(report.released, False)
    return report


def unheld_newest(store: BackupStore) -> list[ManifestHeader]:
    """The newest validated backup of every source whose manifest is not under a temporary hold."""
    newest: dict[tuple[str, str], ManifestHeader] = {}
    for header in select(
        index.read_headers(store, on_damaged=lambda _: None), validated_only=True
    ):  # newest first
        newest.setdefault((header.component, header.source), header)
    return [h for h in newest.values() if not getattr(store.stat(h.path), "temporary_hold", False)]
