"""Holds on what matters most: the manifests of the latest restore point of every source.

The latest restore point of a source is the newest validated backup of each of its parts
(backstop/core/restore_points.py; one backup for a component without parts, two or three for Cloud
Composer, whose DAGs are backed up daily and its metadata hourly). Validation places a temporary
hold on a manifest it marks validated (`BackupStore.write_manifest` with `hold_validated`); prune
moves the holds forward with `move_holds`: it makes sure the backups of the latest restore point
are held, and only then releases the holds on the manifests of every other backup of that source.
So at every moment the newest validated backup of every part is held (from its validation on), and
a hold leaves a backup only once a newer validated backup of each of its parts holds it.

A held object cannot be deleted or replaced by anyone until the hold is released (an explicit
`storage.objects.update`), so a bad script or a wrong retention setting cannot remove the last
good backup. What is held: `manifest.json` and its update records (`_manifest/`); Backstop owns
the temporary holds on manifest objects and releases them, never holds on anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from backstop.core.catalog_index import ManifestHeader, header_of
from backstop.core.manifest import MANIFEST_NAME, BackupManifest
from backstop.core.restore_points import assemble
from tasks.catalog import index
from tasks.storage.bucket import BackupStore
from tasks.storage.manifests import UPDATES_DIR


@dataclass
class HoldReport:
    """What `move_holds` did (or, with dry_run, would do) for one source."""

    held: list[str] = field(default_factory=list)  # the latest restore point's backups
    placed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def notes(self, dry_run: bool) -> list[str]:
        would = "would be " if dry_run else ""
        out = []
        if self.held:
            several = len(self.held) > 1
            what = (
                f"newest validated backups of the parts, {', '.join(self.held)},"
                if several
                else f"newest validated backup {self.held[0]}"
            )
            verb = "are" if several else "is"
            state = (
                f"{verb} held" if not self.placed else ("would be held" if dry_run else f"{verb} now held")
            )
            out.append(f"hold: {what} {state}")
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
    parts: Sequence[str] = (),
    dry_run: bool = False,
) -> HoldReport:
    """Hold the latest restore point of `component`/`source` (the newest validated backup of each
    of `parts`, or of the source for a component without parts), then release every other hold.

    Nothing is released when no backup is validated or when placing the new holds failed.
    """
    report = HoldReport()
    mine = [header_of(m) for m in manifests if m.component == component and m.source == source]
    newest = assemble(component, source, parts, mine).backup_ids
    if not newest:
        return report
    chosen = [m for m in manifests if m.backup_id in newest]
    listed = store.list(f"{component}/{source}/")
    wanted = {key for manifest in chosen for key in store.manifest_keys(manifest, listed)}
    held = held_manifest_objects(listed)
    report.held = newest
    report.placed = sorted(wanted - held)
    report.released = sorted(held - wanted)
    if dry_run:
        return report
    report.problems = store.set_hold(report.placed, True)
    if report.problems:  # the latest restore point is not held: keep the older holds
        report.released = []
        return report
    report.problems = store.set_hold(report.released, False)
    return report


def unheld_newest(store: BackupStore, parts_of: Callable[[str], Sequence[str]]) -> list[ManifestHeader]:
    """The backups of the latest restore point of every source (the newest validated backup of each
    part; `parts_of` gives a component's parts) whose manifest is not under a temporary hold."""
    headers = index.read_headers(store, on_damaged=lambda _: None)
    newest: list[ManifestHeader] = []
    for component, source in sorted({(h.component, h.source) for h in headers}):
        mine = [h for h in headers if (h.component, h.source) == (component, source)]
        point = assemble(component, source, parts_of(component), mine)
        newest += [h for h in mine if h.backup_id in point.backup_ids]
    return [h for h in newest if not getattr(store.stat(h.path), "temporary_hold", False)]
