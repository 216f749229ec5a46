"""GKE flows: named entry points of the generic lifecycle flows (flows/lifecycle.py)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from blocks.settings import DEFAULT_BLOCK_NAME
from flows import lifecycle
from flows.hooks import HOOKS
from tasks.gke import GkeOptions


@flow(name="backup-gke", **HOOKS)
def backup_gke(
    sources: list[str] | None = None,
    options: GkeOptions | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Back up GKE clusters (default: settings.gke.clusters) through Backup for GKE, then validate."""
    return lifecycle.backup_sources(
        "gke", sources, _dump(options), validate_after, sample_percent, settings_block
    )


@flow(name="validate-gke", **HOOKS)
def validate_gke(
    backup_id: str | None = None,
    source: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Validate one backup, or the latest of `source` / of every scheduled one."""
    return lifecycle.validate_backups("gke", backup_id, source, sample_percent, settings_block)


@flow(name="restore-gke", **HOOKS)
def restore_gke(
    source: str,
    target: str | None = None,
    backup_id: str | None = None,
    before: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    skip_damaged: bool = False,
    options: GkeOptions | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Restore a cluster's backup (whole, or namespaces in `only`) into it or cluster `target` ('cluster:suffix' renames)."""
    return lifecycle.restore_backup(
        "gke",
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
