"""What health watches beyond RPO / RTO: drill age, re-verification, the secondary copy's lag. Pure.

`health_rows` (backstop/core/objectives.py) calls `watched_problems` once per source; each check is
a small function of its own:
- `drill_age_problem`: a last drill older than `drill_max_age_days` is a breach (a drill months old
  proves little about today's backups and restore path);
- `secondary_lag_problem`: the secondary copy lagging the primary by more than the RPO is a breach;
- `reverify_problems`: a source not re-verified for two runs, or whose last re-verification marked
  backups invalid or expired, is a warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from backstop.core.manifest import BackupSummary
from backstop.core.reverify import VerificationReport, last_result


class DrillLike(Protocol):
    """What the drill-age check needs of a drill record (backstop.core.objectives.DrillResult)."""

    @property
    def drill_id(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...


@dataclass(frozen=True)
class Watch:
    """What health watches beyond RPO / RTO, from the settings: drill age, re-verification runs
    (their reports), and the secondary copy (when a secondary bucket is configured)."""

    drill_max_age_days: float = 35
    reverify_every_days: float = 7
    reports: tuple[VerificationReport, ...] = ()
    secondary: bool = False


def drill_age_problem(drill: DrillLike | None, now: datetime, max_days: float) -> str | None:
    """A breach: the last drill is older than `max_days` (a drill months old proves little today)."""
    if drill is None:
        return None
    days = (now - drill.started_at).total_seconds() / 86400
    if days <= max_days:
        return None
    return f"last drill {drill.drill_id} is {days:,.0f} days old, over the maximum of {max_days:g} days"


def reverify_problems(
    reports: Iterable[VerificationReport],
    own: list[BackupSummary],
    component: str,
    source: str,
    now: datetime,
    every_days: float,
) -> list[str]:
    """Warnings: not re-verified for two runs (counted from its last re-verification, else from its
    oldest validated backup, checked when it was validated), or the last re-verification marked
    backups damaged or expired."""
    found = last_result(reports, component, source)
    problems = []
    if found is None:
        kept = [m.finished_at or m.started_at for m in own if m.validated]
        days = (now - min(kept)).total_seconds() / 86400 if kept else 0.0
        if days > 2 * every_days:
            problems.append(
                f"kept backups of {component}/{source} never re-verified, the oldest validated "
                f"{days:,.0f} days ago (backstop verify)"
            )
        return problems
    report, result = found
    days = (now - report.at).total_seconds() / 86400
    if days > 2 * every_days:
        problems.append(
            f"last re-verification {report.run_id} is {days:,.0f} days old (runs every {every_days:g})"
        )
    if result.found:
        problems.append(
            f"last re-verification {report.run_id} found {len(result.damaged)} damaged and "
            f"{len(result.expired)} expired backup(s): {', '.join([*result.damaged, *result.expired][:5])}"
        )
    return problems


def secondary_lag_problem(own: list[BackupSummary], now: datetime, rpo_hours: float) -> str | None:
    """A breach: the secondary copy is behind the primary by more than the RPO. Lag: the age of the
    oldest validated backup newer than the newest one copied to the secondary (0 when up to date)."""
    behind: BackupSummary | None = None
    for m in own:  # newest first
        if not m.validated:
            continue
        if _copied(m):
            break
        behind = m
    if behind is None:
        return None
    hours = (now - (behind.finished_at or behind.started_at)).total_seconds() / 3600
    if hours <= rpo_hours:
        return None
    return (
        f"secondary copy lags {hours:,.1f} h behind (backup {behind.backup_id} not copied), "
        f"over the RPO of {rpo_hours:g} h"
    )


def _copied(backup: BackupSummary) -> bool:
    """Whether a header or manifest records a good secondary copy."""
    ok = getattr(backup, "secondary_ok", None)
    record = getattr(backup, "secondary", None)
    return bool(ok) or bool(record is not None and record.ok)


def watched_problems(
    watch: Watch | None,
    own: list[BackupSummary],
    drill: DrillLike | None,
    component: str,
    source: str,
    objectives: Any,
    now: datetime,
) -> tuple[list[str], list[str]]:
    """(breaches, warnings) of what `watch` adds to a source's health row."""
    if watch is None:
        return [], []
    breach = [drill_age_problem(drill, now, watch.drill_max_age_days)]
    if watch.secondary:
        breach.append(secondary_lag_problem(own, now, objectives.rpo_hours))
    warn = reverify_problems(watch.reports, own, component, source, now, watch.reverify_every_days)
    return [p for p in breach if p], warn
