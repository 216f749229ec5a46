"""BigQuery flows: backup-bigquery, validate-bigquery, restore-bigquery (see flows/components.py),
and restore-bigquery-as-of (time travel, no backup)."""

from __future__ import annotations

from typing import Any

from blocks.settings import DEFAULT_BLOCK_NAME
from flows.components import component_flows
from flows.hooks import backstop_flow

backup_bigquery, validate_bigquery, restore_bigquery = component_flows("bigquery")


@backstop_flow(name="restore-bigquery-as-of")
def restore_bigquery_as_of(
    source: str,
    as_of: str,
    target: str = "",
    only: list[str] = [],  # noqa: B006 (the form's default; never changed)
    overwrite: bool = False,
    dry_run: bool = False,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Point-in-time restore straight from BigQuery time travel (no backup files) into another dataset.

    Args:
        source: the source dataset.
        as_of: the moment (ISO 8601), inside the time-travel window.
        target: default `<source>_restored_<yyyymmddThhmmss>`; never the source itself.
        only: only these tables / views (empty: all).
        overwrite: replace non-empty tables in the target.
        dry_run: return the plan, change nothing.
        settings_block: name of the Backstop settings block.
    """
    from prefect.artifacts import create_table_artifact

    from backstop.core.names import check_dataset, parse_time
    from blocks.settings import load_settings
    from tasks.components.bigquery.timetravel import restore_as_of

    settings = load_settings(settings_block)
    report = restore_as_of(
        settings, check_dataset(source), parse_time(as_of), target or None, only or None, overwrite, dry_run
    )
    create_table_artifact(report.actions, key="bigquery-restore-as-of", description=f"{source} as of {as_of}")
    return report.summary() | {"actions": report.actions}
