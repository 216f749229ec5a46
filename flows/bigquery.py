"""BigQuery flows: named entry points of the generic lifecycle flows (flows/lifecycle.py)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from blocks.settings import DEFAULT_BLOCK_NAME
from flows import lifecycle
from flows.hooks import HOOKS
from tasks.bigquery import BigQueryOptions


@flow(name="backup-bigquery", **HOOKS)
def backup_bigquery(
    sources: list[str] | None = None,
    options: BigQueryOptions | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Back up datasets (default: the settings' bigquery_datasets) at one point in time each, then validate."""
    return lifecycle.backup_sources(
        "bigquery", sources, _dump(options), validate_after, sample_percent, settings_block
    )


@flow(name="validate-bigquery", **HOOKS)
def validate_bigquery(
    backup_id: str | None = None,
    source: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Validate one backup, or the latest of `source` / of every scheduled one."""
    return lifecycle.validate_backups("bigquery", backup_id, source, sample_percent, settings_block)


@flow(name="restore-bigquery", **HOOKS)
def restore_bigquery(
    source: str,
    target: str | None = None,
    backup_id: str | None = None,
    before: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    skip_damaged: bool = False,
    options: BigQueryOptions | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Restore a dataset, or tables (`only`), or only the schema, into it or dataset `target`."""
    return lifecycle.restore_backup(
        "bigquery",
        source,
        target,
        backup_id,
        before,
        only,
        overwrite,
        dry_run,
        skip_damaged,
        _dump(options),
        settings_block,
    )


def _dump(options: Any) -> dict[str, Any] | None:
    return options.model_dump() if options is not None else None


@flow(name="restore-bigquery-as-of", **HOOKS)
def restore_bigquery_as_of(
    source: str,
    as_of: str,
    target: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Point-in-time restore straight from BigQuery time travel (no backup files) into another dataset.

    Args:
        source: the source dataset.
        as_of: the moment (ISO 8601), inside the time-travel window.
        target: default `<source>_restored_<yyyymmddThhmmss>`; never the source itself.
        only: only these tables / views.
        overwrite: replace non-empty tables in the target.
        dry_run: return the plan, change nothing.
        settings_block: name of the Backstop settings block.
    """
    from prefect.artifacts import create_table_artifact

    from backstop.names import check_dataset, parse_time
    from blocks.settings import load_settings
    from tasks.bigquery_timetravel import restore_as_of

    settings = load_settings(settings_block)
    report = restore_as_of(
        settings, check_dataset(source), parse_time(as_of), target, only, overwrite, dry_run
    )
    create_table_artifact(report.actions, key="bigquery-restore-as-of", description=f"{source} as of {as_of}")
    return report.summary() | {"actions": report.actions}
