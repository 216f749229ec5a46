"""RPO / RTO maths, health rows and trend rows (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backstop.core.catalog_index import ManifestHeader, header_of
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.objectives import (
    DrillResult,
    breaches,
    drill_verdict,
    health_rows,
    new_drill_id,
    trend_rows,
)
from backstop.core.runs import RunRecord

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@dataclass
class Obj:
    rpo_hours: float = 26
    rto_minutes: float = 60


def objectives(component: str) -> Obj:
    return Obj(rpo_hours=2, rto_minutes=1) if component == "bigquery" else Obj()


def backup(
    source: str,
    hours_ago: float,
    status: str = "validated",
    size: int = 100,
    seconds: float = 60,
    component: str = "gcs",
) -> BackupManifest:
    started = NOW - timedelta(hours=hours_ago)
    return BackupManifest(
        backup_id=f"{started:%Y%m%dT%H%M%S}Z-{abs(hash((source, hours_ago))) % 0xFFFFFF:06x}",
        component=component,
        source=source,
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
        status=status,  # type: ignore[arg-type]
        entries=[ManifestEntry(name="a", stored_key="k", size=size)],
    )


def drill(
    source: str,
    hours_ago: float,
    seconds: float,
    passed: bool = True,
    component: str = "gcs",
    problems: list[str] | None = None,
) -> DrillResult:
    started = NOW - timedelta(hours=hours_ago)
    return DrillResult(
        drill_id=new_drill_id(started),
        component=component,
        source=source,
        backup_id="x",
        started_at=started,
        seconds=seconds,
        rto_minutes=60,
        passed=passed,
        problems=problems or [],
    )


def test_drill_verdict() -> None:
    assert drill_verdict(59.0, 1, []) == (True, False)
    assert drill_verdict(61.0, 1, []) == (False, True)
    assert drill_verdict(1.0, 1, ["differs: a"]) == (False, False)


def test_drill_record_path_is_dated_under_drills() -> None:
    record = drill("raw", 0, 1.0)
    assert record.path == f"drills/gcs/raw/2026/03/10/{record.drill_id}.json"


def test_fresh_validated_backup_with_a_passing_drill_is_ok() -> None:
    (row,) = health_rows([backup("raw", 3)], [drill("raw", 24, 30.0)], objectives, NOW)
    assert (row.status, row.rpo_ok, row.rto_ok) == ("ok", True, True)
    assert row.age_hours == pytest.approx(3 - 60 / 3600)


def test_rpo_counts_only_validated_backups() -> None:
    rows = health_rows(
        [backup("raw", 1, status="complete"), backup("raw", 30)], [drill("raw", 1, 5.0)], objectives, NOW
    )
    (row,) = rows
    assert row.status == "breach" and not row.rpo_ok
    assert "over the RPO of 26 h" in row.problems[0]
    assert breaches(rows) == [f"gcs/raw: {row.problems[0]}"]


def test_expected_source_never_backed_up_is_a_breach() -> None:
    (row,) = health_rows([], [], objectives, NOW, expected=[("gcs", "new-bucket")])
    assert row.status == "breach"
    assert row.problems == ["no validated backup of gcs/new-bucket"]


def test_failed_or_slow_last_drill_breaches_the_rto_even_after_older_passes() -> None:
    rows = health_rows(
        [backup("raw", 1), backup("ds", 1, component="bigquery")],
        [
            drill("raw", 48, 5.0),
            drill("raw", 2, 5.0, passed=False, problems=["differs in gs://x: a"]),
            drill("ds", 2, 61.0, component="bigquery"),
        ],
        objectives,
        NOW,
    )
    by_source = {r.source: r for r in rows}
    assert not by_source["raw"].rto_ok and "failed: differs in gs://x: a" in by_source["raw"].problems[0]
    assert not by_source["ds"].rto_ok and "over the RTO of 1 min" in by_source["ds"].problems[0]


def test_never_drilled_and_recent_failures_warn_without_breaching() -> None:
    (row,) = health_rows(
        [backup("raw", 1), backup("raw", 5, status="invalid"), backup("raw", 40, status="invalid")],
        [],
        objectives,
        NOW,
    )
    assert row.status == "warn" and row.rto_ok and row.drill_passed is None
    assert row.failures_24h == 1
    assert breaches([row]) == []


def test_trend_rows_newest_first_with_size_change() -> None:
    manifests = [backup("raw", h, size=s, seconds=h) for h, s in ((1, 150), (25, 100), (49, 100), (73, 80))]
    rows = trend_rows(manifests, last_n=3)
    assert [r["bytes"] for r in rows] == [150, 100, 100]
    assert [r["size_change_pct"] for r in rows] == [50.0, 0.0, 25.0]
    assert rows[0]["seconds"] == 1.0 and rows[0]["entries"] == 1


def test_trend_compares_a_backup_with_the_last_one_of_the_same_parts() -> None:
    """Composer's hourly metadata backups and its daily DAG backups alternate: each is compared with
    its own kind, not with the other (a 99% "drop" every hour)."""

    def composer(hours_ago: float, parts: list[str], size: int) -> Any:
        made = backup("analytics", hours_ago, size=size, component="composer")
        return header_of(made).model_copy(update={"parts": parts})

    manifests = [
        composer(1, ["metadata"], 11),
        composer(2, ["dags", "config"], 1_000),
        composer(3, ["metadata"], 10),
        composer(26, ["dags", "config"], 800),
    ]
    rows = trend_rows(manifests, last_n=4)
    assert [r["size_change_pct"] for r in rows] == [10.0, 25.0, None, None]


def test_trend_compares_a_bigquery_backup_with_the_last_one_taken_the_same_way() -> None:
    """A snapshot backup stores table descriptions, its rows stay in BigQuery: against an export
    of the same dataset it is no "-100%" drop."""

    def bigquery(hours_ago: float, method: str, size: int) -> Any:
        made = backup("sales", hours_ago, size=size, component="bigquery")
        made.source_state["method"] = method
        return header_of(made)

    manifests = [
        bigquery(1, "snapshot", 900),
        bigquery(2, "read", 3_300_000),
        bigquery(25, "snapshot", 800),
        bigquery(26, "read", 3_000_000),
    ]
    rows = trend_rows(manifests, last_n=4)
    assert [r["size_change_pct"] for r in rows] == [12.5, 10.0, None, None]


def failed_run(source: str, hours_ago: float, kind: str = "backup", error: str = "NotFound") -> RunRecord:
    return RunRecord(
        run_id=f"r{hours_ago}",
        kind=kind,  # type: ignore[arg-type]
        component="gcs",
        source=source,
        outcome="failed",
        at=NOW - timedelta(hours=hours_ago),
        error_kind=error,
        message=f"source bucket gs://{source} does not exist",
    )


def test_a_failed_latest_backup_run_breaches_even_with_a_fresh_good_backup() -> None:
    (row,) = health_rows([backup("raw", 3)], [], objectives, NOW, runs=[failed_run("raw", 1)])
    assert row.status == "breach" and row.rpo_ok and row.failures_24h == 1
    assert "latest backup run failed" in "; ".join(row.problems) and "does not exist" in breaches([row])[0]


def test_a_failed_run_followed_by_a_good_backup_is_counted_but_healthy() -> None:
    (row,) = health_rows([backup("raw", 1)], [], objectives, NOW, runs=[failed_run("raw", 3)])
    assert row.status == "warn" and row.failures_24h == 1 and breaches([row]) == []


def composer_backup(hours_ago: float, parts: list[str]) -> ManifestHeader:
    return header_of(
        backup("analytics", hours_ago, component="composer").model_copy(
            update={"source_state": {"parts": parts}}
        )
    )


def test_a_dag_backup_failing_every_day_breaches_though_hourly_metadata_backups_succeed() -> None:
    composer_objectives = Obj(rpo_hours=1, rto_minutes=240)
    composer_objectives.part_rpo_hours = {"dags": 24, "config": 24}  # type: ignore[attr-defined]
    fresh_metadata = [composer_backup(h, ["metadata"]) for h in (2.5, 1.5, 0.5)]
    stale_dags = composer_backup(50, ["dags", "config"])  # the daily DAG backups failed since

    def parts(component: str) -> tuple[str, ...]:
        return ("dags", "metadata", "config") if component == "composer" else ()

    (row,) = health_rows(
        [stale_dags, *fresh_metadata], [], lambda _: composer_objectives, NOW, parts_for=parts
    )
    assert row.status == "breach" and not row.rpo_ok
    assert row.last_backup_id == stale_dags.backup_id  # the worst part
    assert any(p.startswith("part dags: last validated backup") and "RPO of 24 h" in p for p in row.problems)
    assert any(p.startswith("part config:") for p in row.problems)
    assert not any("metadata" in p for p in row.problems)
    assert "metadata 0.5/1 h" in row.parts

    fresh_dags = composer_backup(20, ["dags", "config"])
    (row,) = health_rows(
        [stale_dags, fresh_dags, *fresh_metadata], [], lambda _: composer_objectives, NOW, parts_for=parts
    )
    assert row.rpo_ok and not row.problems


def test_backups_of_part_of_a_bucket_keep_no_rpo_of_the_whole_while_its_full_backups_stop() -> None:
    def prefix_backup(hours_ago: float) -> ManifestHeader:
        narrowed = backup("raw", hours_ago).model_copy(update={"source_state": {"scope": ["events/"]}})
        return header_of(narrowed)

    stale_whole = header_of(backup("raw", 50))  # the daily full backups failed since
    (row,) = health_rows([stale_whole, prefix_backup(1), prefix_backup(2)], [], objectives, NOW)
    assert row.status == "breach" and row.last_backup_id == stale_whole.backup_id, row
    (row,) = health_rows([prefix_backup(1)], [], objectives, NOW)  # all there is: its own age counts
    assert row.rpo_ok


# -- watched: drill age, re-verification, secondary lag ------------------------------------------
def verified(days_ago: float, source: str = "raw", damaged: list[str] | None = None) -> Any:
    from backstop.core.reverify import SourceResult, VerificationReport

    at = NOW - timedelta(days=days_ago)
    result = SourceResult(
        component="gcs", source=source, backups=2, damaged={b: ["x"] for b in damaged or []}
    )
    return VerificationReport(
        run_id=f"{at:%Y%m%dT%H%M%S}Z-verify-aaaaaa", at=at, share=0.25, sources=[result]
    )


def copied(manifest: BackupManifest, ok: bool = True) -> BackupManifest:
    from backstop.core.manifest import SecondaryCopy

    return manifest.model_copy(update={"secondary": SecondaryCopy(bucket="b", at=NOW, ok=ok)})


def test_a_drill_older_than_its_maximum_is_a_breach_and_a_recent_one_is_fine() -> None:
    from backstop.core.watch import Watch

    watch = Watch(drill_max_age_days=35, reports=(verified(2),))
    (old,) = health_rows([backup("raw", 3)], [drill("raw", 24 * 90, 30.0)], objectives, NOW, watch=watch)
    assert old.status == "breach" and any(
        "90 days old, over the maximum of 35 days" in p for p in old.problems
    )
    (fresh,) = health_rows([backup("raw", 3)], [drill("raw", 24 * 30, 30.0)], objectives, NOW, watch=watch)
    assert fresh.status == "ok", fresh.problems


def test_reverification_never_run_old_or_finding_damage_is_a_warning() -> None:
    from backstop.core.watch import Watch

    rows = [backup("raw", 3)], [drill("raw", 24, 30.0)]
    (fresh,) = health_rows(*rows, objectives, NOW, watch=Watch())  # validated 3 h ago: nothing due
    assert fresh.status == "ok", fresh.problems
    (never,) = health_rows(
        [backup("raw", 3), backup("raw", 24 * 20)], rows[1], objectives, NOW, watch=Watch()
    )
    assert never.status == "warn" and any(
        "never re-verified, the oldest validated 20 days" in p for p in never.problems
    )
    (stale,) = health_rows(*rows, objectives, NOW, watch=Watch(reports=(verified(20),)))
    assert stale.status == "warn" and any("20 days old" in p for p in stale.problems)
    found = Watch(reports=(verified(30), verified(1, damaged=["20260301T000000Z-abcdef"])))
    (damaged,) = health_rows(*rows, objectives, NOW, watch=found)
    assert damaged.status == "warn" and any("1 damaged" in p and "abcdef" in p for p in damaged.problems)


def test_a_secondary_copy_lagging_more_than_the_rpo_is_a_breach() -> None:
    from backstop.core.watch import Watch

    watch = Watch(reports=(verified(1),), secondary=True)
    up_to_date = [copied(backup("raw", 3)), copied(backup("raw", 30))]
    (ok,) = health_rows(up_to_date, [drill("raw", 24, 30.0)], objectives, NOW, watch=watch)
    assert ok.status == "ok", ok.problems
    behind = [backup("raw", 3), backup("raw", 30), copied(backup("raw", 60))]  # RPO 26 h
    (row,) = health_rows(behind, [drill("raw", 24, 30.0)], objectives, NOW, watch=watch)
    assert row.status == "breach" and any("secondary copy lags 30.0 h" in p for p in row.problems)
    just_made = [backup("raw", 3), copied(backup("raw", 20))]  # not copied yet, within the RPO
    (fine,) = health_rows(just_made, [drill("raw", 24, 30.0)], objectives, NOW, watch=watch)
    assert fine.status == "ok", fine.problems
