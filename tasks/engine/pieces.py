"""The backups one restore reads: a restore point's parts grouped by the backup each comes from.

A restore of a restore point (backstop/core/restore_points.py) made of several backups reads each
of them as one piece (the parts it supplies), and tasks/engine/restore.py plans, approves, writes
and verifies all pieces as one restore. `--backup-id` is one piece holding whatever that backup
holds; a component without parts restores the newest backup (at or before T) that holds what is
asked, as one piece, unless newer backups of part of the source lie over it (the point's `layers`):
then each of those backups is a piece for its scope, less what newer ones hold (`exclude`).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

from backstop.core.catalog_index import parts_of
from backstop.core.errors import InvalidInput, ValidationFailed
from backstop.core.names import parse_time
from backstop.core.restore_points import WHOLE, PointPart, RestorePoint, narrowed
from blocks.settings import BackstopSettings
from tasks.catalog import points
from tasks.engine.protocol import RestorePlan, RestoreRequest
from tasks.engine.secondary import RestoreSource
from tasks.storage.bucket import BackupStore, open_store


@dataclass
class Piece:
    """One backup a restore reads, the parts it supplies (None: all it holds) and its request."""

    request: RestoreRequest
    parts: list[str] | None = None
    label: str | None = None  # what the report calls it when it is one layer of several (its scope)
    note: str | None = None  # what the restore must say of it (the layers hold part of the source only)
    source: RestoreSource | None = None
    damaged: dict[str, str] = field(default_factory=dict)
    manifest: Any = None
    plan: RestorePlan | None = None


def point_of(
    component: Any, settings: BackstopSettings, request: RestoreRequest, store: BackupStore | None
) -> RestorePoint:
    """The restore point a request without a backup id asks for: at `before`, else the latest.

    Read from the primary's catalog; from the secondary's when the primary has no backup to offer.
    """
    moment = parse_time(request.before) if request.before else None
    primary = store or open_store(settings)
    point = points.restore_point(primary, component.name, request.source, component.parts, moment)
    if len(point.missing) == len(point.parts) and settings.secondary_bucket:
        try:
            secondary = open_store(settings, secondary=True)
            other = points.restore_point(secondary, component.name, request.source, component.parts, moment)
        except Exception:  # the secondary is a fallback: its own trouble must not hide the answer
            return point
        return other if len(other.missing) < len(point.missing) else point
    return point


def pieces_of(
    component: Any,
    settings: BackstopSettings,
    request: RestoreRequest,
    store: BackupStore | None,
    point: RestorePoint | None,
) -> tuple[list[Piece], RestorePoint | None]:
    """The pieces of a restore, and the restore point they make (None for `--backup-id`, and for a
    component without parts restored without a pinned point, which keeps choosing the newest
    backup that holds what `only` asks)."""
    if request.backup_id:
        return [Piece(request)], None
    if not component.parts:
        laid = point or point_of(component, settings, request, store)
        pieces = layered(component, request, laid) if laid.overlays else []
        if pieces:
            return pieces, laid
    if point is None and not component.parts:
        return [Piece(request)], None
    point = point or point_of(component, settings, request, store)
    wanted = narrowed(point, request.only, component.part_named)
    if not wanted:
        known = ", ".join([*(p.part for p in point.parts), *component.part_names])
        raise InvalidInput(
            f"{component.name} has no part {', '.join(request.only or [])}: choose from {known}"
        )
    pieces = []
    for backup_id, parts in point.by_backup(wanted).items():
        asked = request.only
        if component.parts:  # each piece restores its own parts (and what `only` names of them)
            asked = [o for o in request.only or parts if component.part_named(o) in parts]
        piece = copy.copy(request)
        piece.backup_id, piece.before, piece.only = backup_id, None, asked
        pieces.append(Piece(piece, parts))
    return pieces, point


def layered(component: Any, request: RestoreRequest, point: RestorePoint) -> list[Piece]:
    """One piece per layer of `point` the restore wants (with `only`: those holding what it names
    that newer ones do not), newest first: each backup restores what it holds less what newer
    backups of part of the source hold (they restore it)."""
    layers = (
        point.layers(functools.partial(_asks, component, request.only)) if request.only else point.layers()
    )
    pieces = []
    for layer, newer in layers:
        piece = copy.copy(request)
        piece.backup_id, piece.before, piece.exclude = layer.backup_id, None, newer or None
        if request.only:  # what it names of this layer only: a backup is not asked for what it lacks
            piece.only = _asked(component, request.only, layer, newer)
        pieces.append(Piece(piece, [layer.part], label=layer.share))
    scopes = [item for layer, _ in layers for item in layer.scope or []]
    if pieces and not request.only and all(layer.scope for layer, _ in layers):  # no backup of the whole
        pieces[-1].note = (
            f"no backup of all of {request.source}: only {', '.join(sorted(scopes))} restored "
            "(from backups of those parts); the rest is not restored"
        )
    return pieces


def _asks(component: Any, only: list[str], layer: PointPart, newer: list[str]) -> bool:
    """Whether a name of `only` is restored from `layer` (see `_asked`)."""
    return bool(_asked(component, only, layer, newer))


def _asked(component: Any, only: list[str], layer: PointPart, newer: list[str]) -> list[str]:
    """The names of `only` restored from `layer`: those in it (a backup of the whole, or of its
    scope, or naming more than the scope: `--only models/` of a backup of models/v2/) and in no
    newer layer's scope (a newer backup restores those)."""
    scope = layer.scope
    return [
        name
        for name in only
        if not any(component.within(name, item) for item in newer)
        and (scope is None or any(component.within(name, s) or component.within(s, name) for s in scope))
    ]


def check_validated(piece: Piece) -> None:
    """A piece of a restore point must be a validated backup (its manifest says so, not only its
    catalog entry)."""
    manifest = piece.manifest
    if piece.parts is not None and not manifest.validated:
        raise ValidationFailed(
            f"backup {manifest.backup_id} of {manifest.component}/{manifest.source} is {manifest.status} "
            "in its manifest, though its catalog entry says validated: run `backstop catalog rebuild`"
        )


def part_counts(component: Any, piece: Piece, point: RestorePoint | None) -> dict[str, dict[str, Any]]:
    """part -> which backup it came from, its entries in that backup, and what the restore wrote."""
    manifest, plan = piece.manifest, piece.plan
    assert plan is not None
    names = piece.parts or (parts_of(manifest) or list(component.parts) if component.parts else [WHOLE])
    times = {p.part: p.backup_time for p in point.parts} if point else {}
    found: dict[str, dict[str, Any]] = {}
    for part in names:
        if piece.label:  # one layer of several: all it holds, or what it planned less newer layers
            planned = plan.count("create") + plan.count("replace") + plan.count("unchanged")
            entries = planned if piece.request.exclude else manifest.entry_count
            restored = plan.count("create") + plan.count("replace")
            part = piece.label
        elif part == WHOLE:
            entries = manifest.entry_count
            restored = plan.count("create") + plan.count("replace")
        else:
            entries = sum(1 for e in manifest.entries if component.entry_part(e) == part)
            restored = sum(
                1
                for a in plan.actions
                if a["change"] in ("create", "replace") and component.part_named(a.get("part", "")) == part
            )
        moment = times.get(part) or manifest.started_at
        found[part] = {
            "backup_id": manifest.backup_id,
            "backup_time": moment.isoformat(),
            "entries": entries,
            "restored": restored,
        }
    return found
