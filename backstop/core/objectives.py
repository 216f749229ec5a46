"""Recovery objectives: drill records, RPO / RTO maths, health and trend rows. Pure: no Prefect, no I/O.

A drill record is what one restore drill measured: which backup it restored, where to, how long
the restore took, and whether the restored copy matched its manifest. Records are stored as JSON
in the backup bucket at `drills/<component>/<source>/<yyyy>/<mm>/<dd>/<drill_id>.json` (see
tasks.engine.drill); the health report reads them beside the manifests.

Health per component / source:
- RPO: the age of the newest *validated* backup must stay under `rpo_hours`; a source with no
  validated backup at all is in breach. A component with parts (Composer: dags, config, metadata)
  is held part by part, each to its own RPO (`part_rpo_hours`, else `rpo_hours`): hourly metadata
  backups do not hide a DAG backup that fails every day.
- RTO: the newest drill must have passed (restored, verified, and within `rto_minutes`).
  A source never drilled is reported, not breached (a fresh install has no drills yet).
- Failures: backups marked invalid in the last day are counted and shown as a warning.
- Watched (`backstop.core.watch`, from the settings): a last drill older than `drill_max_age_days` is a breach;
  a secondary copy lagging the primary by more than the RPO is a breach; a source not re-verified
  for two runs, or whose last re-verification found damage, is a warning.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, Field

from backstop.core.manifest import BackupSummary, select
from backstop.core.restore_points import WHOLE, declared, newest_holding
from backstop.core.runs import RunRecord
from backstop.core.watch import Watch, watched_problems

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
    parts: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per part of the restore point: its backup, its entries there, what was restored.",
    )
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
            "restored": ", ".join(f"{p} {c.get('restored', 0)}" for p, c in self.parts.items())
            or self.restored,
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
    parts: str = ""  # per part: the age of its newest validated backup against its RPO

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
    "parts",
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
    parts_for: Callable[[str], Sequence[str]] = lambda _: (),
    watch: Watch | None = None,
) -> list[HealthRow]:
    """One HealthRow per (component, source) seen in the catalog or named in `expected`.

    Args:
        manifests: every readable manifest (or catalog header) of the catalog.
        drills: every drill record.
        objectives_for: the objectives of a component (settings.objectives_for).
        now: the time the report is made for (UTC aware).
        expected: sources the settings say should be backed up, so a source that was never
            backed up is reported as a breach instead of being invisible.
        runs: run records (backstop.core.runs): failed runs count as failures, and a source whose
            latest backup run failed after its last good backup is in breach.
        parts_for: the parts a component declares (Composer: dags, config, metadata): each is held
            to its own RPO, so a part whose backups stopped breaches while the others succeed.
        watch: drill age (a breach past its maximum), the secondary copy's lag (a breach past the
            RPO) and re-verification (warnings), when given.
    """
    manifests, drills, runs = list(manifests), list(drills), list(runs)
    keys = {(m.component, m.source) for m in manifests} | {(d.component, d.source) for d in drills}
    rows = []
    for component, source in sorted(keys | set(expected)):
        objectives = objectives_for(component)
        own = select(manifests, component, source)
        rpo = rpo_check(component, source, own, parts_for(component), objectives, now)
        drill, rto_ok, rto_problems = rto_check(drills, component, source, objectives)
        failures, latest_failed, failure_problems = failure_check(own, runs, component, source, rpo.last, now)
        breached, warned = watched_problems(watch, own, drill, component, source, objectives, now)
        healthy = rpo.ok and rto_ok and not latest_failed and not breached
        status = "breach" if not healthy else ("warn" if failures or drill is None or warned else "ok")
        last = rpo.last
        rows.append(
            HealthRow(
                component=component,
                source=source,
                last_backup_id=last.backup_id if last else None,
                last_backup_at=ended(last) if last else None,
                age_hours=rpo.age,
                rpo_hours=objectives.rpo_hours,
                rpo_ok=rpo.ok,
                last_drill_at=drill.started_at if drill else None,
                drill_seconds=drill.seconds if drill else None,
                drill_passed=drill.passed if drill else None,
                rto_minutes=objectives.rto_minutes,
                rto_ok=rto_ok,
                failures_24h=failures,
                status=status,
                problems=rpo.problems + rto_problems + failure_problems + breached + warned,
                parts=rpo.parts,
            )
        )
    return rows


def ended(backup: BackupSummary) -> datetime:
    return backup.finished_at or backup.started_at


@dataclass
class RpoCheck:
    """The RPO step of a health row: the newest good backup, its age, per-part ages, problems."""

    ok: bool
    last: BackupSummary | None
    age: float | None
    parts: str = ""
    problems: list[str] = field(default_factory=list)


def rpo_check(
    component: str,
    source: str,
    own: list[BackupSummary],
    parts: Sequence[str],
    objectives: ObjectivesLike,
    now: datetime,
) -> RpoCheck:
    """Each part's newest validated backup against the part's RPO (a source without parts: its
    newest validated backup against the component's). The row shows the worst part."""
    good = [m for m in own if m.validated]
    if not good:
        return RpoCheck(False, None, None, problems=[f"no validated backup of {component}/{source}"])
    check = RpoCheck(True, None, None)
    shown = []
    for part in declared(parts):
        rpo_hours = getattr(objectives, "part_rpo_hours", {}).get(part, objectives.rpo_hours)
        last = newest_holding(good, part)  # type: ignore[type-var]
        what = "" if part == WHOLE else f"part {part}: "
        if last is None:
            check.ok = False
            check.problems.append(f"{what}no validated backup of {component}/{source}")
            shown.append(f"{part} never")
            continue
        age = (now - ended(last)).total_seconds() / 3600
        shown.append(f"{part} {age:,.1f}/{rpo_hours:g} h")
        if check.age is None or age > check.age:
            check.last, check.age = last, age
        if age > rpo_hours:
            check.ok = False
            check.problems.append(
                f"{what}last validated backup {last.backup_id} is {age:,.1f} h old, over the RPO of {rpo_hours:g} h"
            )
    check.parts = ", ".join(shown) if parts else ""
    return check


def rto_check(
    drills: list[DrillResult], component: str, source: str, objectives: ObjectivesLike
) -> tuple[DrillResult | None, bool, list[str]]:
    """The newest drill of the source: (it, whether it passed within the RTO, problems)."""
    own_drills = sorted(
        (d for d in drills if d.component == component and d.source == source),
        key=lambda d: (d.started_at, d.drill_id),
        reverse=True,
    )
    drill = own_drills[0] if own_drills else None
    if drill is None:
        return None, True, []
    if drill.seconds > objectives.rto_minutes * 60:
        return (
            drill,
            False,
            [f"last drill {drill.drill_id}: {rto_problem(drill.seconds, objectives.rto_minutes)}"],
        )
    if not drill.passed:
        return (
            drill,
            False,
            [f"last drill {drill.drill_id} failed: {'; '.join(drill.problems[:2]) or 'see its record'}"],
        )
    return drill, True, []


def failure_check(
    own: list[BackupSummary],
    runs: list[RunRecord],
    component: str,
    source: str,
    last: BackupSummary | None,
    now: datetime,
) -> tuple[int, bool, list[str]]:
    """(failures of the last day, whether the latest backup run failed after the last good
    backup, problems): invalid backups and failed runs."""
    problems: list[str] = []
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
    latest_failed = bool(
        own_runs
        and own_runs[0].kind in ("backup", "validate")
        and (last is None or own_runs[0].at > ended(last))
    )
    if latest_failed:
        r = own_runs[0]
        problems.append(f"latest {r.kind} run failed at {r.at:%Y-%m-%d %H:%M} ({r.error_kind}): {r.message}")
    return failures, latest_failed, problems


def breaches(rows: Iterable[HealthRow]) -> list[str]:
    """The problems of every row in breach, each prefixed with its component / source."""
    return [f"{r.component}/{r.source}: {'; '.join(r.problems)}" for r in rows if r.status == "breach"]


def _shape(manifest: BackupSummary) -> tuple[tuple[str, ...], str | None]:
    """The parts a backup holds (a catalog header's record; () for every part) and how it was taken."""
    return tuple(sorted(getattr(manifest, "parts", None) or ())), getattr(manifest, "method", None)


def trend_rows(manifests: Iterable[BackupSummary], last_n: int = 10) -> list[dict[str, Any]]:
    """Duration, size and entry count of the newest `last_n` backups of each component / source.

    Also the change in size against the previous backup of the same source that holds the same
    parts and was taken the same way, so growth or a sudden drop (a source emptied by mistake) stands
    out, and a part backed up on its own schedule (Composer's hourly metadata beside its daily DAGs)
    or another method (a BigQuery snapshot keeps its rows in BigQuery, not in the bucket) is not a change.
    """
    manifests = list(manifests)
    rows: list[dict[str, Any]] = []
    for component, source in sorted({(m.component, m.source) for m in manifests}):
        recent = select(manifests, component, source)
        for index, manifest in enumerate(recent[: max(last_n, 0)]):
            shape = _shape(manifest)
            previous = next((m for m in recent[index + 1 :] if _shape(m) == shape), None)
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
