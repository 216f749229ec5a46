"""Restore drill flow: every component / source in the catalog restored into scratch, verified, timed.

One task per (component, source), run one after another so each measured restore time is the
time of that restore alone. The flow run fails when any drill failed (verification difference,
restore error, over its RTO, scratch target left behind), so the failure hooks and automations
alert.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from backstop.core.errors import InvalidInput, ObjectiveBreached
from backstop.core.report import joined, markdown_table
from blocks.settings import DEFAULT_BLOCK_NAME, BackstopSettings, load_settings
from flows.hooks import backstop_flow
from tasks.engine.drill import DrillResult, drill, drill_sources, drill_summary
from tasks.engine.progress import report
from tasks.engine.protocol import COMPONENTS
from tasks.storage.bucket import BackupStore, open_store

DRILL_COLUMNS = [
    "component",
    "source",
    "backup_id",
    "target",
    "seconds",
    "rto_minutes",
    "passed",
    "over_rto",
    "restored",
    "problems",
]


@task(name="drill", task_run_name="drill-{component}-{source}", cache_policy=NO_CACHE)
def drill_task(settings: BackstopSettings, store: BackupStore, component: str, source: str) -> DrillResult:
    """Drill one component / source (see tasks.engine.drill.drill) and log the outcome."""
    logger = get_run_logger()
    result = drill(component, settings, source, store=store)
    verdict = "passed" if result.passed else "FAILED"
    logger.info(
        "drill of %s/%s %s: backup %s restored into %s in %.2f s (RTO %g min)%s",
        component,
        source,
        verdict,
        result.backup_id,
        result.target,
        result.seconds,
        result.rto_minutes,
        "" if result.passed else ": " + joined(result.problems, 3),
    )
    return result


@backstop_flow(name="restore-drill")
def restore_drill(
    components: list[str] = [],  # noqa: B006 (the form's default; never changed)
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Restore the latest validated backup of every source into a scratch target and verify it.

    Args:
        components: components to drill (default: every registered one).
        settings_block: name of the Backstop settings block.

    Returns:
        One row per drill (component, source, backup_id, seconds, passed, ...).

    Raises:
        ObjectiveBreached: when any drill failed or took longer than its RTO.
    """
    logger = get_run_logger()
    settings = load_settings(settings_block)
    store = open_store(settings)
    chosen = components or sorted(COMPONENTS)
    unknown = [name for name in chosen if name not in COMPONENTS]
    if unknown:
        raise InvalidInput(
            f"unknown component(s) {', '.join(unknown)}: choose from {', '.join(sorted(COMPONENTS))}"
        )
    pairs = drill_sources(store, chosen)
    logger.info("drilling %d source(s) of %s", len(pairs), ", ".join(chosen))
    results = []
    for number, (component, source) in enumerate(pairs):
        report("restore drills", number, len(pairs), unit="drills")
        results.append(drill_task(settings, store, component, source))
    report("restore drills", len(pairs), len(pairs), unit="drills")
    rows = [r.row() for r in results]
    failed = [r for r in results if not r.passed]
    create_table_artifact(
        key="restore-drill", table=rows or [{"result": "no backups to drill"}], description="Restore drill"
    )
    headline = (
        f"{len(results) - len(failed)} of {len(results)} drill(s) passed" if results else "nothing to drill"
    )
    create_markdown_artifact(
        key="restore-drill-report",
        markdown=f"# Restore drill\n\n**{headline}**\n\n{markdown_table(rows, DRILL_COLUMNS)}\n",
        description=headline,
    )
    if failed:
        raise ObjectiveBreached(
            f"{len(failed)} of {len(results)} restore drill(s) failed: {drill_summary(failed)}"
        )
    return rows
