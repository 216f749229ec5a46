"""Re-verification flow: re-read a rotating share of every kept backup, check data outside the bucket.

Scheduled weekly (prefect.yaml `weekly-revalidate-kept-backups`): each run re-reads the share
`reverify_every_days / reverify_period_days` of the stored objects, so every kept byte is re-read
within `reverify_period_days` (tasks/engine/reverify.py, backstop/core/reverify.py). A backup found
damaged is marked invalid, one whose data outside the bucket is gone expired, and the run fails,
so the failure hooks and automations alert.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from backstop.core.errors import ValidationFailed
from backstop.core.report import markdown_table
from backstop.core.reverify import check_share
from blocks.settings import DEFAULT_BLOCK_NAME, load_settings
from flows.hooks import backstop_flow
from tasks.engine import reverify
from tasks.storage.bucket import open_store


@backstop_flow(name="reverify-backups")
def reverify_backups(
    components: list[str] = [],  # noqa: B006 (the form's default; never changed)
    share_percent: float = 0,
    fail_on_damage: bool = True,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Re-verify the kept backups of `components` (default: all).

    Args:
        components: components to re-verify (default: every registered one).
        share_percent: share of the stored objects to download and checksum (0: the settings'
            reverify_every_days / reverify_period_days); sizes and checksums are listed for all.
        fail_on_damage: fail the run (and so alert) when a backup is found damaged or expired; the
            CLI prints the report and exits 1 instead.
        settings_block: name of the Backstop settings block.

    Returns:
        The report: run id, share, totals, one row per source, and the problems found.

    Raises:
        ValidationFailed: a backup was found damaged or expired (marked so in the catalog).
    """
    logger = get_run_logger()
    settings = load_settings(settings_block)
    share = check_share(share_percent) if share_percent else None
    report = reverify.reverify(
        settings, open_store(settings), components or None, share, progress=logger.info
    )
    rows, problems, totals = reverify.summary_rows(report), report.problems(), report.totals()
    create_table_artifact(
        key="reverify", table=rows or [{"result": "no backups kept"}], description="Re-verification"
    )
    headline = (
        f"{totals['backups']} backup(s) of {totals['sources']} source(s): {totals['read_back']} object(s) "
        f"re-read ({report.share:.0%} share), {totals['damaged']} damaged, {totals['expired']} expired"
    )
    body = f"# Re-verification\n\n**{headline}**\n\n{markdown_table(rows)}\n"
    if problems:
        body += "\n## Marked invalid or expired (never chosen for a restore)\n\n" + "\n".join(
            f"- {p}" for p in problems
        )
    create_markdown_artifact(key="reverify-report", markdown=body, description=headline)
    logger.info("%s", headline)
    if problems and fail_on_damage:
        raise ValidationFailed(
            f"re-verification found {len(problems)} problem(s): " + " | ".join(problems[:5]), problems
        )
    return {
        "run_id": report.run_id,
        "share": report.share,
        "totals": totals,
        "sources": rows,
        "problems": problems,
    }
