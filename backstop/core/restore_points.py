"""Restore points: what a source looked like at a time T, assembled from backups. Pure: no I/O.

A source is backed up in parts (Cloud Composer: "dags", "config", "metadata"), not always all in
one run: the shipped schedules take DAGs and config daily and metadata hourly. What a person
recovers to is the source at T, so a restore point takes, for each part the source has, the newest
validated backup started at or before T that holds that part. A component without parts has one
implicit part, `WHOLE`: its restore point is simply the newest validated backup at or before T.

A backup can also be narrowed to part of its source (`backup gcs --prefix models/`, `backup
bigquery --table events`: its `scope`). Such backups are laid over the newest backup of the whole:
a point takes, besides each part's base backup, every newer backup of part of the source whose scope
newer ones do not already hold (`overlays`), and a restore of the point reads each of them for its
scope less what newer ones hold (`layers`): models/ from this morning's backup of it, the rest from
last night's backup of the whole bucket. Where no backup of the whole exists, the newest backup of
part of it is the base and older ones with other scopes lie under it.

The backups come in as catalog headers (backstop/core/catalog_index.py) whose `parts` say what each
holds; `None` (a backup without a parts record) holds every part of its component.
tasks/catalog/points.py reads the headers and hands them here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field

from backstop.core.errors import NotFound
from backstop.core.manifest import backup_time

WHOLE = "all"  # the one implicit part of a component that declares none


class PartsHeader(Protocol):
    """What assembling needs of a backup (a catalog header or a manifest summary)."""

    @property
    def backup_id(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def validated(self) -> bool: ...
    @property
    def parts(self) -> Sequence[str] | None: ...


class PointPart(BaseModel):
    """One part of a restore point: the backup it comes from (None: no backup at or before T)."""

    part: str
    backup_id: str | None = None
    backup_time: datetime | None = None
    scope: list[str] | None = None  # what that backup holds when it holds part of the source only

    def label(self) -> str:
        """'dags', or 'all (events/ only)' for a backup of part of the source."""
        return f"{self.part} ({', '.join(self.scope)} only)" if self.scope else self.part

    @property
    def share(self) -> str:
        """What it gives as one layer of a restore: 'events/' for a backup of part of the source,
        else its part ('all', 'dags')."""
        return ", ".join(self.scope) if self.scope else self.part


class RestorePoint(BaseModel):
    """A source as of `as_of` (None: the latest), part by part."""

    component: str
    source: str
    as_of: datetime | None = None
    parts: list[PointPart] = Field(default_factory=list)
    # backups of part of the source laid over a part's base backup, newest first (see the module)
    overlays: list[PointPart] = Field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Parts with no validated backup at or before T."""
        return [p.part for p in self.parts if p.backup_id is None]

    @property
    def backup_ids(self) -> list[str]:
        """The backups the point is made of, newest first, each once."""
        found = sorted(((_time_of(p), p.backup_id or "") for p in self.chosen), reverse=True)
        return list(dict.fromkeys(b for _, b in found))

    @property
    def chosen(self) -> list[PointPart]:
        """Every part and overlay that has a backup."""
        return [p for p in [*self.parts, *self.overlays] if p.backup_id]

    @property
    def time(self) -> datetime | None:
        """The newest backup time in the point (what a listing shows the point as)."""
        times = [p.backup_time for p in self.chosen if p.backup_time]
        return max(times) if times else None

    @property
    def oldest(self) -> datetime | None:
        """The oldest backup time in the point: every part is back at least to this time."""
        times = [p.backup_time for p in self.parts if p.backup_time]
        return min(times) if times else None

    def by_backup(self, parts: Sequence[str] | None = None) -> dict[str, list[str]]:
        """backup id -> the parts (of `parts`, default all) restored from it, newest backup first."""
        wanted = [p for p in self.chosen if parts is None or p.part in parts]
        order = {b: i for i, b in enumerate(self.backup_ids)}
        grouped: dict[str, list[str]] = {}
        for p in sorted(wanted, key=lambda p: order[p.backup_id or ""]):
            grouped.setdefault(p.backup_id or "", []).append(p.part)
        return grouped

    def part_map(self) -> dict[str, str | None]:
        return {p.part: p.backup_id for p in self.parts}

    def layers(
        self, asks: Callable[[PointPart, list[str]], bool] = lambda layer, newer: True
    ) -> list[tuple[PointPart, list[str]]]:
        """What a restore of the point reads, newest backup first: each part's overlays and base,
        each with the scope items it leaves to newer backups of that part (what they hold). Newest
        first, so that a view of the base finds the tables laid over it already written.
        `asks(layer, newer)`: whether a restore wants anything of a layer less what the newer ones
        read hold (a restore of some names: `--only`); a layer it does not want is not read, and
        leaves nothing to the older ones."""
        found = sorted(self.chosen, key=lambda p: (_time_of(p), p.backup_id or ""), reverse=True)
        laid: list[tuple[PointPart, list[str]]] = []
        newer: dict[str, list[str]] = {}
        for layer in found:
            left = list(newer.get(layer.part, []))
            if asks(layer, left):
                laid.append((layer, left))
                newer.setdefault(layer.part, []).extend(layer.scope or [])
        return laid

    def label(self) -> str:
        """'dags, config: ID1; metadata: ID2', 'all: ID1; events/: ID2' (or the one backup id)."""
        if len(self.parts) == 1 and self.parts[0].part == WHOLE and not self.overlays:
            return self.parts[0].backup_id or "none"
        if self.overlays:
            shown = [f"{p.share}: {p.backup_id}" for p, _ in self.layers()[::-1]]
        else:
            shown = [f"{', '.join(ps)}: {b}" for b, ps in self.by_backup().items()]
        if self.missing:
            shown.append(f"{', '.join(self.missing)}: none")
        return "; ".join(shown)

    def row(self) -> dict[str, Any]:
        """One row for `backstop list --restore-points` (JSON form)."""
        return {
            "component": self.component,
            "source": self.source,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "parts": {
                p.part: {
                    "backup_id": p.backup_id,
                    "backup_time": p.backup_time.isoformat() if p.backup_time else None,
                    "scope": p.scope,
                }
                for p in self.parts
            },
            "overlays": [
                {
                    "part": p.part,
                    "backup_id": p.backup_id,
                    "backup_time": p.backup_time.isoformat() if p.backup_time else None,
                    "scope": p.scope,
                }
                for p in self.overlays
            ],
            "missing": self.missing,
        }


def _time_of(part: PointPart) -> datetime:
    return part.backup_time or backup_time(part.backup_id or "")


def part_rows(parts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A restore report's `parts` (part -> its backup and counts) as table rows, none when there is
    nothing to tell: the one part, the whole source, from one backup."""
    if list(parts) in ([], [WHOLE]):
        return []
    return [{"part": part} | counts for part, counts in parts.items()]


def declared(parts: Sequence[str]) -> list[str]:
    """A component's parts: what it declares, else the one implicit part."""
    return list(parts) or [WHOLE]


def holds(header: PartsHeader, part: str) -> bool:
    """Whether a backup holds `part` (a backup without a parts record holds every part)."""
    held = getattr(header, "parts", None)  # a manifest has no `parts`: it records them in source_state
    return part == WHOLE or held is None or part in held


def scoped(header: PartsHeader) -> bool:
    """Whether a backup was narrowed to part of its source (`--prefix`, `--table`: its `scope`)."""
    return getattr(header, "scope", None) is not None


H = TypeVar("H", bound=PartsHeader)


def covered(scope: Sequence[str], by: Sequence[str]) -> bool:
    """Whether every item of `scope` lies within an item of `by` (the same name, or under a prefix
    ending in '/')."""
    return all(any(item == b or (b.endswith("/") and item.startswith(b)) for b in by) for item in scope)


def laid(headers: Sequence[H], part: str) -> list[H]:
    """The backups a restore of `part` reads, newest first (`headers` newest first): each backup of
    part of the source whose scope newer ones do not already hold, down to the newest backup of the
    whole source."""
    chosen: list[H] = []
    held: list[str] = []
    for h in headers:
        if not holds(h, part):
            continue
        scope = getattr(h, "scope", None)
        if scope is None:
            return [*chosen, h]
        if not covered(scope, held):
            chosen.append(h)
            held += scope
    return chosen


def newest_holding(headers: Sequence[H], part: str) -> H | None:
    """The first of `headers` (newest first) that holds `part`, one of the whole source before one
    narrowed to part of it (`scoped`); one of those only where no other holds it."""
    found = next((h for h in headers if holds(h, part) and not scoped(h)), None)
    return found or next((h for h in headers if holds(h, part)), None)


def assemble(
    component: str,
    source: str,
    parts: Sequence[str],
    headers: Iterable[PartsHeader],
    as_of: datetime | None = None,
) -> RestorePoint:
    """The restore point of `source` at `as_of` (None: the latest) from its backups' headers.

    Each part comes from the newest validated backup started at or before `as_of` that holds it
    (one of the whole source before one of part of it), with the newer backups of part of it laid
    over (`overlays`); a part with none is listed with no backup (see `RestorePoint.missing`).
    """
    usable = sorted(
        (h for h in headers if h.validated and (as_of is None or h.started_at <= as_of)),
        key=lambda h: (h.started_at, h.backup_id),
        reverse=True,
    )
    point = RestorePoint(component=component, source=source, as_of=as_of)
    for part in declared(parts):
        layers = laid(usable, part)
        base = next((h for h in layers if not scoped(h)), layers[0] if layers else None)
        point.parts.append(_point_part(part, base))
        point.overlays += [_point_part(part, h) for h in layers if h is not base]
    return point


def _point_part(part: str, found: PartsHeader | None) -> PointPart:
    return PointPart(
        part=part,
        backup_id=found.backup_id if found else None,
        backup_time=found.started_at if found else None,
        scope=getattr(found, "scope", None),
    )


def history(
    component: str, source: str, parts: Sequence[str], headers: Iterable[PartsHeader]
) -> list[RestorePoint]:
    """Every distinct restore point of `source`, newest first: one at each validated backup's start
    that changes what the source can be restored to."""
    headers = list(headers)
    moments = sorted({h.started_at for h in headers if h.validated}, reverse=True)
    points = [assemble(component, source, parts, headers, moment) for moment in moments]
    # a backup that changes no part (one whose scope a newer backup holds) is not a point of its own
    after = [*points[1:], None]
    return [
        p
        for p, older in zip(points, after, strict=True)
        if older is None or (p.parts, p.overlays) != (older.parts, older.overlays)
    ]


def narrowed(
    point: RestorePoint, only: Sequence[str] | None, part_named: Callable[[str], str] = str
) -> list[str]:
    """The parts a restore of `point` covers: those `only` names (through `part_named`: Composer's
    "snapshot" is part of "config", its file dags/etl.py of "dags"), else all of them. `only` of a
    component without parts narrows within its one part.

    Raises NotFound naming every wanted part that has no backup at or before T.
    """
    names = [p.part for p in point.parts]
    wanted = names
    if only and WHOLE not in names:
        wanted = list(dict.fromkeys(n for n in map(part_named, only) if n in names))
    missing = [p for p in wanted if p in point.missing]
    if missing:
        when = f"at or before {point.as_of.isoformat(timespec='seconds')}" if point.as_of else "yet"
        have = [p for p in wanted if p not in missing]
        narrow = f" (restore the parts that exist with --only {' --only '.join(have)})" if have else ""
        what = ", ".join(missing)
        raise NotFound(
            f"{point.component}/{point.source} has no validated backup of part {what} {when}: "
            f"nothing restored{narrow}"
        )
    return wanted
