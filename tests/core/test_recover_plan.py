"""The recovery plan and the operation record (backstop/core/recovery.py): pure, no platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backstop.core.catalog_index import header_of
from backstop.core.manifest import BackupManifest, new_backup_id
from backstop.core.recovery import (
    Check,
    PlannedSource,
    RecoveryOperation,
    RecoveryStep,
    plan_recovery,
    plan_rows,
    spread_seconds,
    summary_lines,
)
from backstop.core.restore_points import PointPart, RestorePoint, assemble
from blocks.settings import BackstopSettings, Objectives

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def backup(component: str, source: str, hours_before_t: float, status: str = "validated") -> BackupManifest:
    started = T - timedelta(hours=hours_before_t)
    return BackupManifest(
        backup_id=new_backup_id(started),
        component=component,
        source=source,
        started_at=started,
        status=status,
    )


def points(wanted: list[tuple[str, str]], manifests: list[BackupManifest]) -> list[RestorePoint]:
    """The restore points at T of the wanted sources (components without parts)."""
    headers = [header_of(m) for m in manifests]
    return [
        assemble(c, s, (), [h for h in headers if h.component == c and h.source == s], T) for c, s in wanted
    ]


def test_newest_validated_backup_at_or_before_t_per_source_in_dependency_order() -> None:
    chosen_gcs = backup("gcs", "raw", 2)
    chosen_bq = backup("bigquery", "sales", 0)  # exactly at T counts
    manifests = [
        backup("gcs", "raw", 30),
        chosen_gcs,
        backup("gcs", "raw", 1, status="invalid"),  # newer but not validated
        backup("gcs", "raw", -1),  # after T
        chosen_bq,
        backup("gcs", "other", 5),  # not wanted
    ]
    wanted = [("gke", "c1"), ("gcs", "raw"), ("bigquery", "sales"), ("configs", "etc")]
    plan = plan_recovery(T, points(wanted, manifests))
    assert [(p.component, p.source) for p in plan] == [
        ("configs", "etc"),
        ("bigquery", "sales"),
        ("gcs", "raw"),
        ("gke", "c1"),
    ]
    by_source = {p.source: p for p in plan}
    assert by_source["raw"].backup_id == chosen_gcs.backup_id
    assert by_source["raw"].distance_seconds == 2 * 3600
    assert by_source["sales"].backup_id == chosen_bq.backup_id and by_source["sales"].distance_seconds == 0
    assert by_source["etc"].missing and by_source["c1"].missing
    assert spread_seconds(plan) == 2 * 3600


def test_the_spread_counts_the_parts_of_one_source() -> None:
    """Composer's DAGs from the daily backup, its metadata from the hourly one: 23 h apart."""
    parts = [
        PointPart(part="dags", backup_id="d", backup_time=T - timedelta(hours=24)),
        PointPart(part="metadata", backup_id="m", backup_time=T - timedelta(hours=1)),
    ]
    planned = PlannedSource(
        component="composer", source="env", backup_id="m", backup_time=T - timedelta(hours=24), parts=parts
    )
    assert spread_seconds([planned]) == 23 * 3600


def operation(statuses: list[str]) -> RecoveryOperation:
    plan = plan_recovery(
        T,
        points([("configs", "etc"), ("gcs", "raw")], [backup("configs", "etc", 3), backup("gcs", "raw", 1)]),
    )
    steps = [
        RecoveryStep(component=p.component, source=p.source, backup_id=str(p.backup_id), status=s)  # type: ignore[arg-type]
        for p, s in zip(plan, statuses, strict=True)
    ]
    return RecoveryOperation(
        operation_id="20261120T130000Z-recover-abc123",
        as_of=T,
        started_at=T + timedelta(hours=1),
        who="alice",
        reason="bad deploy",
        plan=plan,
        steps=steps,
        outcome="failed" if "failed" in statuses else "succeeded",
    )


def test_a_failed_operation_names_what_completed_and_how_to_resume() -> None:
    failed = operation(["succeeded", "failed"])
    failed.steps[1].error = "PermissionDenied: no"
    failed.steps[1].checks = [Check(name="gcs: objects", passed=False, detail="1 missing")]
    assert failed.first_incomplete() == 1
    assert failed.recovery_point == T - timedelta(hours=3)
    text = "\n".join(summary_lines(failed))
    assert "completed: configs/etc; not completed: gcs/raw" in text
    assert "backstop recover --resume 20261120T130000Z-recover-abc123" in text
    assert "check gcs: objects failed: 1 missing" in text
    assert "spread between the backups chosen 2.0 h" in text
    rows = plan_rows(failed)
    assert [r["status"] for r in rows] == ["succeeded", "failed"] and rows[1]["checks"] == "0/1"


def test_a_succeeded_operation_has_nothing_to_resume() -> None:
    done = operation(["succeeded", "succeeded"])
    assert done.first_incomplete() is None
    assert "resume" not in "\n".join(summary_lines(done))
    assert done.row()["steps"] == "2/2"


def test_objectives_default_to_the_operations_plan_and_the_settings_override() -> None:
    settings = BackstopSettings(project="p", backup_bucket="b", objectives={"gcs": Objectives(rpo_hours=6)})
    assert settings.objectives_for("composer") == Objectives(
        rpo_hours=1, rto_minutes=240, part_rpo_hours={"dags": 24, "config": 24}
    )  # metadata hourly, DAGs and config daily: each part against its own RPO
    assert settings.objectives_for("bigquery") == Objectives(rpo_hours=24, rto_minutes=240)
    assert settings.objectives_for("configs").rto_minutes == 60
    assert settings.objectives_for("gke").rto_minutes == 240
    assert settings.objectives_for("gcs").rpo_hours == 6  # the settings win
    assert settings.objectives_for("unknown") == Objectives()
