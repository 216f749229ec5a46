"""Restore points: what a source looked like at a time T, assembled from backups. Pure: no I/O.

A source is backed up in parts (Cloud Composer: "dags", "config", "metadata"), not always all in
one run: the shipped schedules take DAGs and config daily and metadata hourly. What a person
recovers to is the source at T, so a restore point takes, for each part the source has, the newest
validated backup started at or before T that holds that part. A component without parts has one
implicit part, `WHOLE`: its restore point is simply the newest validated backup at or before T.

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


class RestorePoint(BaseModel):
    """A source as of `as_of` (None: the latest), part by part."""

    component: str
    source: str
    as_of: datetime | None = None
    parts: list[PointPart] = Field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Parts with no validated backup at or before T."""
        return [p.part for p in self.parts if p.backup_id is None]

    @property
    def backup_ids(self) -> list[str]:
        """The backups the point is made of, newest first, each once."""
        found = sorted(
            ((p.backup_time or backup_time(p.backup_id), p.backup_id) for p in self.parts if p.backup_id),
            reverse=True,
        )
        return list(dict.fromkeys(b for _, b in found))

    @property
    def time(self) -> datetime | None:
        """The newest backup time in the point (what a listing shows the point as)."""
        times = [p.backup_time for p in self.parts if p.backup_time]
        return max(times) if times else None

    @property
    def oldest(self) -> datetime | None:
        """The oldest backup time in the point: every part is back at least to this time."""
        times = [p.backup_time for p in self.parts if p.backup_time]
        return min(times) if times else None

    def by_backup(self, parts: Sequence[str] | None = None) -> dict[str, list[str]]:
        """backup id -> the parts (of `parts`, default all) restored from it, newest backup first."""
        wanted = [p for p in self.parts if p.backup_id and (parts is None or p.part in parts)]
        order = {b: i for i, b in enumerate(self.backup_ids)}
        grouped: dict[str, list[str]] = {}
        for p in sorted(wanted, key=lambda p: order[p.backup_id or ""]):
            grouped.setdefault(p.backup_id or "", []).append(p.part)
        return grouped

    def part_map(self) -> dict[str, str | None]:
        return {p.part: p.backup_id for p in self.parts}

    def label(self) -> str:
        """'dags, config: ID1; metadata: ID2' (or the one backup id)."""
        if len(self.parts) == 1 and self.parts[0].part == WHOLE:
            return self.parts[0].backup_id or "none"
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
            "missing": self.missing,
        }


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

    Each part comes from the newest validated backup started at or before `as_of` that holds it;
    a part with none is listed with no backup (see `RestorePoint.missing`).
    """
    usable = sorted(
        (h for h in headers if h.validated and (as_of is None or h.started_at <= as_of)),
        key=lambda h: (h.started_at, h.backup_id),
        reverse=True,
    )
    chosen = []
    for part in declared(parts):
        found = newest_holding(usable, part)
        chosen.append(
            PointPart(
                part=part,
                backup_id=found.backup_id if found else None,
                backup_time=found.started_at if found else None,
                scope=getattr(found, "scope", None),
            )
        )
    return RestorePoint(component=component, source=source, as_of=as_of, parts=chosen)


def history(
    component: str, source: str, parts: Sequence[str], headers: Iterable[PartsHeader]
) -> list[RestorePoint]:
    """Every distinct restore point of `source`, newest first: one at each validated backup's start
    that changes what the source can be restored to."""
    headers = list(headers)
    moments = sorted({h.started_at for h in headers if h.validated}, reverse=True)
    points = [assemble(component, source, parts, headers, moment) for moment in moments]
    # a backup of part of the source taken after one of all of it changes no point: listed once
    after = [*points[1:], None]
    return [p for p, older in zip(points, after, strict=True) if older is None or p.parts != older.parts]


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
