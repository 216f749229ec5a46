"""Harden the backup buckets: uniform access, no public access, soft delete, a retention policy.

One task per bucket (primary and secondary). See tasks/operations/harden.py for what is set and why.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from backstop.core.errors import Conflict
from backstop.core.report import markdown_table
from blocks.clients import storage_client
from blocks.settings import BackstopSettings, load_settings
from flows.hooks import backstop_flow
from tasks.operations import harden

LOCK_WARNING = (
    "locking is irreversible: a locked retention policy can never be shortened or removed, and the "
    "bucket cannot be deleted while it holds objects younger than the policy"
)


@task(name="harden-bucket", cache_policy=NO_CACHE)
def harden_one(
    settings: BackstopSettings, bucket: str, days: float, lock: bool, dry_run: bool
) -> list[dict[str, Any]]:
    changes = harden.harden_bucket(storage_client(settings.project), bucket, days, lock, dry_run)
    for change in changes:
        if change.changed:
            get_run_logger().info(
                "gs://%s %s: %s -> %s%s",
                bucket,
                change.setting,
                change.before,
                change.after,
                " (dry run)" if dry_run else "",
            )
    return [c.as_dict() for c in changes]


@backstop_flow(name="harden-backup-buckets")
def harden_backup_buckets(
    dry_run: bool = False, lock_retention: bool = False, yes: bool = False, settings_block: str = "default"
) -> dict[str, Any]:
    """Harden the primary and secondary backup buckets; idempotent.

    Args:
        dry_run: only report what would change.
        lock_retention: also lock the retention policy (irreversible; needs `yes`).
        yes: confirm the irreversible lock.
        settings_block: name of the Backstop settings block.

    Returns:
        {"changes": one row per bucket and setting, "retention_days", "retention_reason", "changed": bool,
         "notes": what the user must know}.
    """
    if lock_retention and not yes and not dry_run:
        raise Conflict(f"--lock-retention: {LOCK_WARNING}; add --yes to lock")
    settings = load_settings(settings_block)
    days, why = harden.shortest_retention_days(settings)
    buckets = [b for b in (settings.backup_bucket, settings.secondary_bucket) if b]
    futures = [harden_one.submit(settings, b, days, lock_retention, dry_run) for b in buckets]
    rows = [row for future in futures for row in future.result()]
    changed = any(r["changed"] for r in rows)
    notes = [
        f"retention policy of {days:g} days, the shortest retention the settings allow ({why}): no object "
        f"younger than {days:g} days can be deleted or replaced by anyone, prune included; prune reports "
        "such objects as kept by the bucket and removes them on a later run"
    ]
    if lock_retention:
        notes.append(LOCK_WARNING)
    lost = [f"gs://{r['bucket']} {r['setting']}" for r in rows if not r["kept"]]
    if lost:
        notes.append(
            "the bucket did not keep: " + ", ".join(lost) + " (an emulator without bucket configuration?)"
        )
    if dry_run:
        notes.append("dry run: nothing changed" + ("" if changed else "; nothing would change"))
    elif not changed:
        notes.append("nothing changed: the backup buckets were already hardened")
    create_markdown_artifact(
        "# Hardening\n\n" + markdown_table(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes), key="harden"
    )
    return {
        "changes": rows,
        "retention_days": days,
        "retention_reason": why,
        "changed": changed,
        "notes": notes,
    }
