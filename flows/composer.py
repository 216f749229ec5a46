"""Cloud Composer flows: named entry points of the generic lifecycle flows (flows/lifecycle.py)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from blocks.settings import DEFAULT_BLOCK_NAME
from flows import lifecycle
from flows.hooks import HOOKS
from tasks.composer import ComposerOptions


@flow(name="backup-composer", **HOOKS)
def backup_composer(
    sources: list[str] | None = None,
    options: ComposerOptions | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Back up Composer environments (default: settings.composer.environments): the parts in options, then validate."""
    return lifecycle.backup_sources(
        "composer", sources, _dump(options), validate_after, sample_percent, settings_block
    )


@flow(name="validate-composer", **HOOKS)
def validate_composer(
    backup_id: str | None = None,
    source: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Validate one backup, or the latest of `source` / of every scheduled one."""
    return lifecycle.validate_backups("composer", backup_id, source, sample_percent, settings_block)


@flow(name="restore-composer", **HOOKS)
def restore_composer(
    source: str,
    target: str | None = None,
    backup_id: str | None = None,
    before: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    skip_damaged: bool = False,
    options: ComposerOptions | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Restore an environment's parts (`only`: dags, metadata, config, snapshot) into it or environment / gs:// `target`."""
    return lifecycle.restore_backup(
        "composer",
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
