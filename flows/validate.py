"""Validate any backup by id, whatever its component, through the component protocol."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from backstop.names import check_backup_id
from blocks.settings import load_settings
from flows.hooks import HOOKS
from tasks import catalog
from tasks.component import get_component
from tasks.context import open_store


@flow(name="validate-backup", **HOOKS)
def validate_backup(
    backup_id: str, sample_percent: float | None = None, settings_block: str = "default"
) -> dict[str, Any]:
    """Validate one backup; a failed validation fails the run and names what differs."""
    settings = load_settings(settings_block)
    store = open_store(settings)
    manifest = store.find_manifest(check_backup_id(backup_id))
    percent = catalog.sample_percent(settings, sample_percent)
    checked = get_component(manifest.component).validate(settings, store, manifest, percent)
    record = checked.validation
    row = {
        "backup_id": checked.backup_id,
        "component": checked.component,
        "source": checked.source,
        "status": checked.status,
        "checked": record.checked if record else 0,
        "read_back": record.read_back if record else 0,
    }
    get_run_logger().info("backup %s is %s", backup_id, checked.status)
    create_table_artifact([row], key="validation", description=f"Validation of {backup_id}")
    return row
