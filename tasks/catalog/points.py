"""Restore points and the previous good backup, looked up in the catalog index.

The assembly itself is pure (backstop/core/restore_points.py); this module reads the headers it
needs (tasks/catalog/index.py) and fills in the parts of a header written before headers recorded
them (from its manifest, once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from backstop.core.catalog_index import ManifestHeader, parts_of
from backstop.core.errors import BackstopError
from backstop.core.manifest import BackupManifest, select
from backstop.core.restore_points import RestorePoint, assemble, history
from tasks.catalog import index
from tasks.storage.bucket import BackupStore

log = logging.getLogger(__name__)
Report = Callable[[str], None]


def headers_with_parts(
    store: BackupStore,
    component: str,
    source: str | None,
    parts: Sequence[str],
    on_damaged: Report | None = None,
) -> list[ManifestHeader]:
    """The headers of `component` / `source`; for a component with parts, a header that does not
    record its parts (written before headers did) gets them from its manifest."""
    headers = index.read_headers(store, component, source, on_damaged=on_damaged or log.warning)
    if not parts:
        return headers
    filled = []
    for header in headers:
        if header.parts is None and header.validated:
            try:
                header = header.model_copy(update={"parts": parts_of(index.load(store, header))})
            except BackstopError as exc:
                (on_damaged or log.warning)(str(exc))
                continue
        filled.append(header)
    return filled


def restore_point(
    store: BackupStore,
    component: str,
    source: str,
    parts: Sequence[str],
    as_of: datetime | None = None,
    on_damaged: Report | None = None,
) -> RestorePoint:
    """The restore point of `source` at `as_of` (None: the latest), part by part."""
    headers = headers_with_parts(store, component, source, parts, on_damaged)
    return assemble(component, source, parts, headers, as_of)


def restore_points(
    store: BackupStore,
    component: str,
    parts: Sequence[str],
    source: str | None = None,
    on_damaged: Report | None = None,
) -> list[RestorePoint]:
    """Every restore point of every source of `component` (or of `source`), newest first."""
    headers = headers_with_parts(store, component, source, parts, on_damaged)
    points: list[RestorePoint] = []
    for name in sorted({h.source for h in headers}):
        points += history(component, name, parts, [h for h in headers if h.source == name])
    return points


def previous_backup(
    store: BackupStore,
    component: str,
    source: str,
    part: str | None = None,
    before: BackupManifest | None = None,
    validated_only: bool = False,
    on_damaged: Report | None = None,
) -> BackupManifest | None:
    """The previous good backup of `source`: the newest not found invalid (with `validated_only`,
    the newest validated), holding `part` when given, started at or before `before` (and not it).

    Its header is found in the catalog index, then only that manifest is read: an incremental
    backup streams its entries, a check compares against its source state.
    """
    report = on_damaged or (lambda _: None)
    headers = [
        h
        for h in select(index.read_headers(store, component, source, on_damaged=report))
        if (h.validated if validated_only else h.status != "invalid")
        and (before is None or (h.backup_id != before.backup_id and h.started_at <= before.started_at))
        and (part is None or h.parts is None or part in h.parts)
    ]

    def wanted(manifest: BackupManifest) -> bool:
        held = parts_of(manifest)
        return manifest.status != "invalid" and (part is None or held is None or part in held)

    return index.first_loadable(store, headers, wanted, report, validated_only)
