"""Secondary-region copies: every committed backup copied server-side to the secondary bucket.

One task per backup, whose objects are copied in units on the settings' task runner (the flow's
threads or a Dask cluster: tasks/engine/units.py); a backup whose copy fails verification is
recorded in its manifest (secondary.ok = false) and retried on the next run; the run fails at the
end, after every other backup was copied.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from backstop.core.errors import ValidationFailed
from backstop.core.manifest import BackupManifest
from backstop.core.report import joined
from blocks.settings import BackstopSettings, load_settings
from flows.hooks import backstop_flow
from tasks.engine import secondary
from tasks.engine.protocol import get_component
from tasks.storage.bucket import open_store


@task(name="copy-backup-to-secondary", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def copy_backup(settings: BackstopSettings, manifest: BackupManifest) -> dict[str, Any]:
    """Copy one backup to the secondary bucket and verify it; returns a summary row."""
    copied = secondary.copy_to_secondary(
        open_store(settings), secondary.secondary_store(settings), manifest, settings
    )
    record = copied.secondary
    if record is None:  # copy_to_secondary always records one
        raise ValidationFailed(f"backup {manifest.backup_id}: no secondary copy recorded")
    get_run_logger().info(
        "%s/%s %s: %d objects -> gs://%s %s",
        manifest.component,
        manifest.source,
        manifest.backup_id,
        record.objects,
        record.bucket,
        "verified" if record.ok else f"FAILED ({len(record.problems)} problem(s))",
    )
    return {
        "component": manifest.component,
        "source": manifest.source,
        "backup_id": manifest.backup_id,
        "objects": record.objects,
        "ok": record.ok,
        "problem": record.problems[0] if record.problems else "",
    }


@backstop_flow(name="copy-backups-to-secondary")
def copy_backups_to_secondary(component: str = "", settings_block: str = "default") -> list[dict[str, Any]]:
    """Copy every committed backup not yet copied (or whose last copy failed) to the secondary bucket.

    Args:
        component: only backups of this component (empty: all).
        settings_block: name of the Backstop settings block.

    Raises:
        ValidationFailed: when a copy could not be verified (after all others were copied).
    """
    if component:
        get_component(component)  # InvalidInput naming the known ones
    settings = load_settings(settings_block)
    secondary.secondary_store(settings)  # a clear ConfigError / NotFound before any work
    pending = secondary.pending_copies(open_store(settings), component or None)
    get_run_logger().info("%d backup(s) to copy to gs://%s", len(pending), settings.secondary_bucket)
    rows = [future.result() for future in [copy_backup.submit(settings, m) for m in pending]]
    create_table_artifact(rows, key="secondary-copies", description="Copies to the secondary bucket")
    failed = [r for r in rows if not r["ok"]]
    if failed:
        raise ValidationFailed(
            f"{len(failed)} of {len(rows)} backup(s) could not be copied to gs://{settings.secondary_bucket}: "
            + joined([f"{r['backup_id']}: {r['problem']}" for r in failed]),
            [r["problem"] for r in failed],
        )
    return rows
