"""Health report flow: every source (each part of it, for Composer) against its RPO and RTO, recent
failures, and a trend table; the age of its last drill, its last re-verification and the secondary
copy's lag (objectives.Watch).

Reads the catalog only (manifests and drill records). The run fails with ObjectiveBreached when a
source has no validated backup within its RPO or its last drill failed / exceeded its RTO, so the
failure hooks and automations alert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from backstop.core.catalog_index import ManifestHeader
from backstop.core.errors import ObjectiveBreached
from backstop.core.objectives import HEALTH_COLUMNS, HealthRow, breaches, health_rows, trend_rows
from backstop.core.report import human_bytes, markdown_table
from backstop.core.runs import RunRecord
from backstop.core.watch import Watch
from blocks.settings import DEFAULT_BLOCK_NAME, BackstopSettings, load_settings
from flows.hooks import backstop_flow
from tasks.catalog import index
from tasks.catalog.backups import list_runs
from tasks.engine.drill import DrillResult, list_drills
from tasks.engine.protocol import COMPONENTS, get_component
from tasks.engine.reverify import read_reports
from tasks.storage.bucket import BackupStore, open_store


def expected_sources(settings: BackstopSettings) -> list[tuple[str, str]]:
    """Sources the settings schedule for backup, of every registered component (a source never
    backed up must still show up)."""
    return [(name, source) for name in COMPONENTS for source in get_component(name).sources(settings)]


def component_parts(name: str) -> tuple[str, ...]:
    """The parts a registered component declares (none for an unknown one)."""
    return tuple(get_component(name).parts) if name in COMPONENTS else ()


def watch_of(settings: BackstopSettings, store: BackupStore, on_damaged: Any = None) -> Watch:
    """What health watches beyond RPO / RTO, from the settings and the re-verification reports."""
    return Watch(
        drill_max_age_days=settings.drill_max_age_days,
        reverify_every_days=settings.reverify_every_days,
        reports=tuple(read_reports(store, on_damaged=on_damaged)),
        secondary=bool(settings.secondary_bucket),
    )


def catalog_records(
    store: BackupStore,
) -> tuple[list[ManifestHeader], list[DrillResult], list[RunRecord], list[str]]:
    """Every manifest header, drill record and recent run record, plus the damaged ones as problems."""
    damaged: list[str] = []
    manifests = index.read_headers(store, on_damaged=damaged.append)
    drills = list_drills(store, on_damaged=damaged.append)
    runs = list_runs(store, limit_days=7, on_damaged=damaged.append)
    return manifests, drills, runs, damaged


@task(name="read-catalog", cache_policy=NO_CACHE)
def read_catalog(
    store: BackupStore,
) -> tuple[list[ManifestHeader], list[DrillResult], list[RunRecord], list[str]]:
    """`catalog_records`, logged."""
    manifests, drills, runs, damaged = catalog_records(store)
    get_run_logger().info(
        "catalog: %d manifest(s), %d drill record(s), %d run record(s), %d damaged",
        len(manifests), len(drills), len(runs), len(damaged),
    )  # fmt: skip
    return manifests, drills, runs, damaged


def source_health(
    settings: BackstopSettings,
    store: BackupStore,
    manifests: list[ManifestHeader],
    drills: list[DrillResult],
    runs: list[RunRecord],
    damaged: list[str],
) -> list[HealthRow]:
    """Every expected source's health from the catalog records, against the settings' objectives
    (the health flow and `backstop health` both report this)."""
    return health_rows(
        manifests,
        drills,
        settings.objectives_for,
        datetime.now(UTC),
        expected_sources(settings),
        runs,
        component_parts,
        watch_of(settings, store, damaged.append),
    )


def render(rows: list[HealthRow], trend: list[dict[str, Any]], damaged: list[str]) -> str:
    """The markdown report."""
    breached = [r for r in rows if r.status == "breach"]
    head = (
        f"**{len(breached)} of {len(rows)} source(s) breach an objective**"
        if breached
        else f"**all {len(rows)} source(s) healthy**"
    )
    trend_md = [dict(r, size=human_bytes(r["bytes"])) for r in trend]
    parts = [
        "# Backstop health",
        head,
        "## Objectives",
        markdown_table([r.row() for r in rows], HEALTH_COLUMNS),
        "## Trend (newest backups first)",
        markdown_table(
            trend_md,
            ["component", "source", "backup_id", "status", "seconds", "entries", "size", "size_change_pct"],
        ),
    ]
    if damaged:
        parts += ["## Damaged catalog records", "\n".join(f"- {d}" for d in damaged)]
    return "\n\n".join(parts) + "\n"


@backstop_flow(name="health-report")
def health_report(settings_block: str = DEFAULT_BLOCK_NAME, trend_runs: int = 10) -> list[dict[str, Any]]:
    """Report every source's backup age against its RPO and last drill against its RTO.

    Args:
        settings_block: name of the Backstop settings block.
        trend_runs: how many of the newest backups per source the trend table shows.

    Returns:
        One health row per component / source.

    Raises:
        ObjectiveBreached: when any source breaches its RPO or RTO.
    """
    logger = get_run_logger()
    settings = load_settings(settings_block)
    store = open_store(settings)
    manifests, drills, runs, damaged = read_catalog(store)
    rows = source_health(settings, store, manifests, drills, runs, damaged)
    trend = trend_rows(manifests, trend_runs)
    table = [r.row() for r in rows]
    create_table_artifact(
        key="health", table=table or [{"status": "no sources"}], description="Backstop health"
    )
    create_table_artifact(
        key="health-trend", table=trend or [{"status": "no backups"}], description="Backup trend"
    )
    create_markdown_artifact(
        key="health-report", markdown=render(rows, trend, damaged), description="Backstop health"
    )
    for row in rows:
        logger.info("%s %s/%s %s", row.status.upper(), row.component, row.source, "; ".join(row.problems))
    breached = breaches(rows)
    if breached:
        raise ObjectiveBreached(f"{len(breached)} source(s) breach an objective: " + " | ".join(breached))
    return table
