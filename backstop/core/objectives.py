"""Recovery objectives: drill records, RPO / RTO maths, health and trend rows. Pure: no Prefect, no I/O.

A drill record is what one restore drill measured: which backup it restored, where to, how long
the restore took, and whether the restored copy matched its manifest. Records are stored as JSON
in the backup bucket at `drills/<component>/<source>/<yyyy>/<mm>/<dd>/<drill_id>.json` (see
tasks.engine.drill); the health report reads them beside the manifests.

Health per component / source:
- RPO: the age of the newest *validated* backup must stay under `rpo_hours`; a source with no
  validated backup at all is in breach.
- RTO: the newest drill must have passed (restored, verified, and within `rto_minutes`).
  A source never drilled is reported, not breached (a fresh install has no drills yet).
- Failures: backups marked invalid in the last day are counted and shown as a warning.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, Field

from backstop.core.manifest import BackupSummary, select
from backstop.core.runs import RunRecord

DRILL_PREFIX = "drills/"


class ObjectivesLike(Protocol):
    """What the maths needs of blocks.settings.Objectives."""

    rpo_hours: float
    rto_minutes: float


class DrillResult(BaseModel):
    """The outcome of one restore drill of one component / source."""

    drill_id: str
    component: str
    source: str
    backup_id: str | None = Field(
        default=None, description="Backup restored; None when none could be resolved."
    )
    target: str | None = Field(default=None, description="Scratch target the drill restored into.")
    started_at: datetime
    seconds: float = Field(default=0.0, ge=0, description="Measured restore time (the recovery time).")
    verify_seconds: float = Field(default=0.0, ge=0, description="Time spent verifying the restored copy.")
    rto_minutes: float
    restored: int = Field(default=0, description="Items the restore created or overwrote.")
    passed: bool
    over_rto: bool = False
    cleaned_up: bool = True
    problems: list[str] = Field(default_factory=list)

    @property
    def path(self) -> str:
        """Object name of this record in the backup bucket."""
        day = self.started_at.astimezone(UTC)
        return f"{DRILL_PREFIX}{self.component}/{self.source}/{day:%Y/%m/%d}/{self.drill_id}.json"

    def row(self) -> dict[str, Any]:
        """One table row for people."""
        return {
            "component": self.component,
            "source": self.source,
            "backup_id": self.backup_id,
            "target": self.target,
            "seconds": round(self.seconds, 2),
            "rto_minutes": self.rto_minutes,
            "passed": self.passed,
            "over_rto": self.over_rto,
            "problems": "; ".join(self.problems[:3])
            + (f" (+{len(self.problems) - 3})" if len(self.problems) > 3 else ""),
        }


def new_drill_id(now: datetime | None = None) -> str:
    """A sortable, unique drill id: UTC start time plus 6 random hex digits."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"


def drill_verdict(seconds: float, rto_minutes: float, problems: list[str]) -> tuple[bool, bool]:
    """(passed, over_rto): a drill passes when it found no problem and finished within the RTO."""
    over_rto = seconds > rto_minutes * 60
    return (not problems and not over_rto), over_rto


def rto_problem(seconds: float, rto_minutes: float) -> str:
    return f"restore took {seconds:,.1f} s, over the RTO of {rto_minutes:g} min ({rto_minutes * 60:,.0f} s)"


@dataclass
class HealthRow:
    """Health of one component / source against its objectives."""

    component: str
    source: str
    last_backup_id: str | None
    last_backup_at: datetime | None
    age_hours: float | None
    rpo_hours: float
    rpo_ok: bool
    last_drill_at: datetime | None
    drill_seconds: float | None
    drill_passed: bool | None
    rto_minutes: float
    rto_ok: bool
    failures_24h: int
    status: str  # ok | warn | breach
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_backup_at"] = (
            self.last_backup_at.isoformat(timespec="seconds") if self.last_backup_at else None
        )
        out["last_drill_at"] = (
            self.last_drill_at.isoformat(timespec="seconds") if self.last_drill_at else None
        )
        out["age_hours"] = None if self.age_hours is None else round(self.age_hours, 2)
        out["drill_seconds"] = None if self.drill_seconds is None else round(self.drill_seconds, 2)
        out["problems"] = "; ".join(self.problems)
        return out


HEALTH_COLUMNS = [
    "status",
    "component",
    "source",
    "last_backup_id",
    "age_hours",
    "rpo_hours",
    "drill_seconds",
    "rto_minutes",
    "drill_passed",
    "failures_24h",
    "problems",
]


def health_rows(
    manifests: Iterable[BackupSummary],
    drills: Iterable[DrillResult],
    objectives_for: Callable[[str], ObjectivesLike],
    now: datetime,
    expected: Iterable[tuple[str, str]] = (),
    runs: Iterable[RunRecord] = (),
) -> list[HealthRow]:
    """One HealthRow per (component, source) seen in the catalog or named in `expected`.

    Args:
        manifests: every readable manifest of the catalog.
        drills: every drill record.
        objectives_for: the objectives of a component (settings.objectives_for).
        now: the time the report is made for (UTC aware).
        expected: sources the settings say should be backed up, so a source that was never
            backed up is reported as a breach instead of being invisible.
        runs: run records (backstop.core.runs): failed runs count as failures, and a source whose
            latest backup run failed after its last good backup is in breach.
    """
    manifests = list(manifests)
    drills = list(drills)
    runs = list(runs)
    keys = (
        {(m.component, m.source) for m in manifests}
        | {(d.component, d.source) for d in drills}
        | set(expected)
    )
    rows = []
    for component, source in sorted(keys):
        objectives = objectives_for(component)
        own = select(manifests, component, source)
        good = [m for m in own if m.validated]
        last = good[0] if good else None
        problems: list[str] = []
        age = None if last is None else (now - (last.finished_at or last.started_at)).total_seconds() / 3600
        if last is None:
            rpo_ok = False
            problems.append(f"no validated backup of {component}/{source}")
        else:
            rpo_ok = age is not None and age <= objectives.rpo_hours
            if not rpo_ok:
                problems.append(
                    f"last validated backup {last.backup_id} is {age:,.1f} h old, over the RPO of {objectives.rpo_hours:g} h"
                )
        own_drills = sorted(
            (d for d in drills if d.component == component and d.source == source),
            key=lambda d: (d.started_at, d.drill_id),
            reverse=True,
        )
        drill = own_drills[0] if own_drills else None
        rto_ok = drill is None or (drill.passed and drill.seconds <= objectives.rto_minutes * 60)
        if drill is not None and not rto_ok:
            if drill.seconds > objectives.rto_minutes * 60:
                problems.append(
                    f"last drill {drill.drill_id}: {rto_problem(drill.seconds, objectives.rto_minutes)}"
                )
            else:
                problems.append(
                    f"last drill {drill.drill_id} failed: {'; '.join(drill.problems[:2]) or 'see its record'}"
                )
        since = now - timedelta(days=1)
        failures = sum(1 for m in own if m.status == "invalid" and m.started_at >= since)
        if failures:
            problems.append(f"{failures} backup(s) failed validation in the last day")
        own_runs = sorted(
            (r for r in runs if r.component == component and r.source == source and r.failed),
            key=lambda r: r.at,
            reverse=True,
        )
        failed_runs = [r for r in own_runs if r.at >= since]
        if failed_runs:
            failures += len(failed_runs)
            problems.append(f"{len(failed_runs)} run(s) failed in the last day")
        latest_backup_failed = bool(
            own_runs
            and own_runs[0].kind in ("backup", "validate")
            and (last is None or own_runs[0].at > (last.finished_at or last.started_at))
        )
        if latest_backup_failed:
            r = own_runs[0]
            problems.append(
                f"latest {r.kind} run failed at {r.at:%Y-%m-%d %H:%M} ({r.error_kind}): {r.message}"
            )
        healthy = rpo_ok and rto_ok and not latest_backup_failed
        status = "breach" if not healthy else ("warn" if failures or drill is None else "ok")
        rows.append(
            HealthRow(
                component=component,
                source=source,
                last_backup_id=last.backup_id if last else None,
                last_backup_at=(last.finished_at or last.started_at) if last else None,
                age_hours=age,
                rpo_hours=objectives.rpo_hours,
                rpo_ok=rpo_ok,
                last_drill_at=drill.started_at if drill else None,
                drill_seconds=drill.seconds if drill else None,
                drill_passed=drill.passed if drill else None,
                rto_minutes=objectives.rto_minutes,
                rto_ok=rto_ok,
                failures_24h=failures,
                status=status,
                problems=problems,
            )
        )
    return rows


def breaches(rows: Iterable[HealthRow]) -> list[str]:
    """The problems of every row in breach, each prefixed with its component / source."""
    return [f"{r.component}/{r.source}: {'; '.join(r.problems)}" for r in rows if r.status == "breach"]


def trend_rows(manifests: Iterable[BackupSummary], last_n: int = 10) -> list[dict[str, Any]]:
    """Duration, size and entry count of the newest `last_n` backups of each component / source.

    Also the change in size against the previous backup of the same source, so growth or a
    sudden drop (a source emptied by mistake) stands out.
    """
    manifests = list(manifests)
    rows: list[dict[str, Any]] = []
    for component, source in sorted({(m.component, m.source) for m in manifests}):
        recent = select(manifests, component, source)[: max(last_n, 0) + 1]
        for index, manifest in enumerate(recent[:last_n]):
            previous = recent[index + 1] if index + 1 < len(recent) else None
            change = None
            if previous is not None and previous.total_bytes:
                change = round(100 * (manifest.total_bytes - previous.total_bytes) / previous.total_bytes, 1)
            duration = manifest.duration_seconds
            rows.append(
                {
                    "component": component,
                    "source": source,
                    "backup_id": manifest.backup_id,
                    "status": manifest.status,
                    "seconds": None if duration is None else round(duration, 2),
                    "entries": manifest.entry_count,
                    "bytes": manifest.total_bytes,
                    "size_change_pct": change,
                }
            )
    return rows
