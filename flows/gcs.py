"""Cloud Storage flows: named entry points of the generic lifecycle flows (flows/lifecycle.py)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from blocks.settings import DEFAULT_BLOCK_NAME
from flows import lifecycle
from flows.hooks import HOOKS
from tasks.gcs import GcsOptions


@flow(name="backup-gcs", **HOOKS)
def backup_gcs(
    sources: list[str] | None = None,
    options: GcsOptions | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Back up buckets (default: the settings' gcs_sources) incrementally, then validate each."""
    return lifecycle.backup_sources(
        "gcs", sources, _dump(options), validate_after, sample_percent, settings_block
    )


@flow(name="validate-gcs", **HOOKS)
def validate_gcs(
    backup_id: str | None = None,
    source: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Validate one backup, or the latest of `source` / of every scheduled bucket."""
    return lifecycle.validate_backups("gcs", backup_id, source, sample_percent, settings_block)


@flow(name="restore-gcs", **HOOKS)
def restore_gcs(
    source: str,
    target: str | None = None,
    backup_id: str | None = None,
    before: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    skip_damaged: bool = False,
    options: GcsOptions | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Restore a bucket, or objects and prefixes ending in '/' (`only`), into it or `target`."""
    return lifecycle.restore_backup(
        "gcs",
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
