"""Whole-platform recovery as of a point in time: the plan and the operation record. Pure.

`plan_recovery` takes, for every (component, source), its restore point at the recovery time T
(backstop/core/restore_points.py: each part from its newest validated backup started at or before
T), and says how far from T each lands (the recovery point reached), which
sources have no backup before T and the spread between the oldest and newest backups chosen.
`RecoveryOperation` is what the catalog keeps of one recovery: who, why, the plan, the approval,
every step with its status, duration and checks, and the outcome. Steps run in dependency order
(`ORDER`): configuration first, then the data (BigQuery, Cloud Storage), then Composer, then GKE.

No I/O and no Prefect here: tasks/operations/recover.py reads the catalog and runs the steps.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from backstop.core.restore_points import PointPart, RestorePoint

OPERATIONS_PREFIX = "operations/"
# Configuration first (everything reads it), then the data, then what runs on the data.
ORDER = ("configs", "bigquery", "gcs", "composer", "gke")

StepStatus = Literal["pending", "running", "succeeded", "failed"]
Outcome = Literal["planned", "running", "succeeded", "failed"]


class Check(BaseModel):
    """One post-restore check of one step."""

    name: str
    passed: bool
    detail: str = ""


class PlannedSource(BaseModel):
    """The restore point chosen for one source, and how far it lies from the recovery time."""

    component: str
    source: str
    backup_id: str | None = Field(default=None, description="The newest backup of the restore point.")
    backup_time: datetime | None = Field(default=None, description="The oldest backup time of its parts.")
    distance_seconds: float | None = Field(default=None, description="T minus backup_time.")
    parts: list[PointPart] = Field(default_factory=list)
    overlays: list[PointPart] = Field(
        default_factory=list, description="Newer backups of part of the source laid over its base."
    )

    @property
    def missing(self) -> bool:
        return self.backup_id is None

    @property
    def missing_parts(self) -> list[str]:
        """Parts with no validated backup at or before T (of a source that has some)."""
        return [p.part for p in self.parts if p.backup_id is None] if self.backup_id else []

    def label(self) -> str:
        if self.backup_id is None:
            return "NONE before T"
        if len(self.parts) <= 1 and not self.overlays:
            return self.backup_id
        point = RestorePoint(
            component=self.component, source=self.source, parts=self.parts, overlays=self.overlays
        )
        return point.label()


class RecoveryStep(BaseModel):
    """One restore of the operation: a source's chosen backup into its original or an alternate target."""

    component: str
    source: str
    backup_id: str
    parts: dict[str, str] = Field(default_factory=dict, description="Part -> the backup it is restored from.")
    overlays: list[PointPart] = Field(
        default_factory=list, description="Newer backups of part of the source restored over the parts."
    )
    target: str | None = Field(default=None, description="None: the original location.")
    overwrites: str = Field(default="", description="What the step replaces or deletes (from its dry run).")
    status: StepStatus = "pending"
    started_at: datetime | None = None
    seconds: float | None = None
    restore: dict[str, Any] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    error: str = ""

    @property
    def label(self) -> str:
        return f"{self.component}/{self.source}"


class RecoveryOperation(BaseModel):
    """The record of one platform recovery, rewritten (as a new object) at every change of state."""

    operation_id: str
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None = None
    who: str
    reason: str = ""
    flow_run_id: str | None = None
    into_original: bool = True
    target_suffix: str | None = None
    exact: bool = Field(
        default=True,
        description="Delete what appeared after T in each recovered scope (False: --keep-newer keeps it).",
    )
    plan: list[PlannedSource] = Field(default_factory=list)
    approval: str = ""
    steps: list[RecoveryStep] = Field(default_factory=list)
    outcome: Outcome = "planned"
    message: str = ""
    resumed: int = Field(default=0, description="How many times the operation was resumed.")

    @property
    def missing(self) -> list[PlannedSource]:
        return [p for p in self.plan if p.missing]

    @property
    def spread_seconds(self) -> float:
        return spread_seconds(self.plan)

    @property
    def recovery_point(self) -> datetime | None:
        """The oldest backup chosen: every source is back at least to this time."""
        times = [p.backup_time for p in self.plan if p.backup_time]
        return min(times) if times else None

    @property
    def rto_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def first_incomplete(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.status != "succeeded"), None)

    def row(self) -> dict[str, Any]:
        done = sum(1 for s in self.steps if s.status == "succeeded")
        checks = [c for s in self.steps for c in s.checks]
        return {
            "operation_id": self.operation_id,
            "as_of": self.as_of.isoformat(timespec="seconds"),
            "started": self.started_at.isoformat(timespec="seconds"),
            "who": self.who,
            "reason": self.reason,
            "steps": f"{done}/{len(self.steps)}",
            "checks": f"{sum(c.passed for c in checks)}/{len(checks)} passed",
            "outcome": self.outcome,
        }


def new_operation_id(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}Z-recover-{secrets.token_hex(3)}"


def operation_key(operation_id: str, sequence: int) -> str:
    """Each state of an operation is a new object (a bucket retention policy forbids rewriting one)."""
    return f"{OPERATIONS_PREFIX}{operation_id}/{sequence:04d}.json"


def order_key(component: str) -> int:
    return ORDER.index(component) if component in ORDER else len(ORDER)


def plan_recovery(as_of: datetime, points: list[RestorePoint]) -> list[PlannedSource]:
    """Per restore point at `as_of` (one per wanted source), what is restored, in dependency order
    (sources with no backup at all are planned as missing)."""
    planned = []
    for point in sorted(points, key=lambda p: (order_key(p.component), p.source)):
        if not point.backup_ids:
            planned.append(PlannedSource(component=point.component, source=point.source, parts=point.parts))
            continue
        oldest = point.oldest
        planned.append(
            PlannedSource(
                component=point.component,
                source=point.source,
                backup_id=point.backup_ids[0],
                backup_time=oldest,
                distance_seconds=(as_of - oldest).total_seconds() if oldest else None,
                parts=point.parts,
                overlays=point.overlays,
            )
        )
    return planned


def spread_seconds(plan: list[PlannedSource]) -> float:
    """Time between the oldest and the newest backup chosen (how far apart the sources, and the parts
    of one source, are)."""
    times = [t for p in plan for t in [p.backup_time, *(part.backup_time for part in p.parts)] if t]
    return (max(times) - min(times)).total_seconds() if times else 0.0


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def plan_rows(operation: RecoveryOperation) -> list[dict[str, Any]]:
    """One row per planned source and its step: what is restored, from when, into where, how it went."""
    steps = {(s.component, s.source): s for s in operation.steps}
    rows = []
    for planned in operation.plan:
        step = steps.get((planned.component, planned.source))
        checks = step.checks if step else []
        rows.append(
            {
                "component": planned.component,
                "source": planned.source,
                "backup": planned.label(),
                "backup time": planned.backup_time.isoformat(timespec="seconds")
                if planned.backup_time
                else "-",
                "behind T": human_seconds(planned.distance_seconds),
                "target": (step.target or "original") if step else "-",
                "overwrites": step.overwrites if step else "",
                "status": step.status if step else "skipped",
                "checks": f"{sum(c.passed for c in checks)}/{len(checks)}" if checks else "",
                "seconds": round(step.seconds, 1) if step and step.seconds is not None else "",
            }
        )
    return rows


def summary_lines(operation: RecoveryOperation) -> list[str]:
    """What a person needs after the table: the recovery point, the spread, gaps, failures, resume."""
    point = operation.recovery_point
    lines = [
        f"operation {operation.operation_id} by {operation.who}"
        + (f" ({operation.reason})" if operation.reason else "")
        + f": {operation.outcome}",
        f"recovery as of {operation.as_of.isoformat(timespec='seconds')}; recovery point reached "
        f"{point.isoformat(timespec='seconds') if point else '-'}; spread between the backups chosen "
        f"{human_seconds(operation.spread_seconds)}",
    ]
    partial = [p for p in operation.plan if p.missing_parts]
    if partial:
        lines.append(
            "part(s) with no validated backup before T: "
            + ", ".join(f"{p.component}/{p.source} {', '.join(p.missing_parts)}" for p in partial)
        )
    if operation.missing:
        lines.append(
            "no validated backup before T (not restored): "
            + ", ".join(f"{p.component}/{p.source}" for p in operation.missing)
        )
    if operation.approval:
        lines.append(f"approval: {operation.approval}")
    if operation.rto_seconds is not None and operation.outcome in ("succeeded", "failed"):
        lines.append(f"time from start to the end of the checks: {human_seconds(operation.rto_seconds)}")
    failed = [s for s in operation.steps if s.status == "failed"]
    for step in failed:
        lines.append(f"step {step.label} failed: {step.error}")
        lines += [f"  check {c.name} failed: {c.detail}" for c in step.checks if not c.passed]
    if operation.outcome == "failed":
        done = [s.label for s in operation.steps if s.status == "succeeded"]
        left = [s.label for s in operation.steps if s.status != "succeeded"]
        lines.append(f"completed: {', '.join(done) or 'none'}; not completed: {', '.join(left) or 'none'}")
        if left:
            lines.append(f"resume with: backstop recover --resume {operation.operation_id}")
    return lines
