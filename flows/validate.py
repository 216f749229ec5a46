"""Validate any backup by id, whatever its component."""

from __future__ import annotations

from typing import Any

from blocks.settings import DEFAULT_BLOCK_NAME
from flows.components import validate_backups
from flows.hooks import backstop_flow


@backstop_flow(name="validate-backup")
def validate_backup(
    backup_id: str, sample_percent: float | None = None, settings_block: str = DEFAULT_BLOCK_NAME
) -> dict[str, Any]:
    """Validate one backup; a failed validation fails the run and names what differs."""
    return validate_backups(None, backup_id, None, sample_percent, settings_block)[0]
