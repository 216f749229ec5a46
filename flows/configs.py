"""Configuration files flows: named entry points of the generic lifecycle flows (flows/lifecycle.py)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from blocks.settings import DEFAULT_BLOCK_NAME
from flows import lifecycle
from flows.hooks import HOOKS
from tasks.configs import ConfigsOptions


@flow(name="backup-configs", **HOOKS)
def backup_configs(
    sources: list[str] | None = None,
    options: ConfigsOptions | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Back up configuration sources (default: settings.configs.sources), one archive each, then validate."""
    return lifecycle.backup_sources(
        "configs", sources, _dump(options), validate_after, sample_percent, settings_block
    )


@flow(name="validate-configs", **HOOKS)
def validate_configs(
    backup_id: str | None = None,
    source: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Validate one backup, or the latest of `source` / of every scheduled one."""
    return lifecycle.validate_backups("configs", backup_id, source, sample_percent, settings_block)


@flow(name="restore-configs", **HOOKS)
def restore_configs(
    source: str,
    target: str | None = None,
    backup_id: str | None = None,
    before: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    skip_damaged: bool = False,
    options: ConfigsOptions | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Restore a source's files (all, or paths / glob patterns in `only`) to their place or `target`."""
    return lifecycle.restore_backup(
        "configs",
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
