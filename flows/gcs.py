"""Cloud Storage flows: backup (batched server-side copies), validate, restore.

A flow is a short composition of tasks from tasks/gcs.py; one task per bucket step or per batch of
up to 1,000 objects, so a 10,000-object backup makes tens of task runs, not thousands.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.utilities.annotations import quote

from backstop.errors import ValidationFailed
from backstop.manifest import BackupManifest, ManifestEntry
from backstop.names import check_bucket, parse_time
from backstop.report import human_bytes
from blocks.clients import storage_client
from blocks.settings import BackstopSettings, load_settings
from flows.approval import require_approval
from flows.hooks import HOOKS
from tasks import catalog, gcs
from tasks.context import open_store
from tasks.gcs_plan import BackupPlan, SourceObject, batches
from tasks.secondary import open_for_restore


@task(name="plan-gcs-backup", cache_policy=NO_CACHE)
def plan_backup(
    settings: BackstopSettings, bucket: str, prefixes: list[str] | None
) -> tuple[BackupPlan, BackupManifest]:
    """List the source and the pool, decide what to copy, and open the backup (in progress)."""
    store = open_store(settings)
    # Mark the run in progress before planning: prune does not sweep pool objects it may reuse.
    manifest = catalog.begin_backup(store, gcs.NAME, bucket, {"prefixes": prefixes or []})
    try:
        plan_ = gcs.plan(storage_client(settings.project), store, bucket, prefixes)
    except BaseException:
        catalog.abandon_backup(store, manifest)
        raise
    get_run_logger().info(
        "gs://%s: %d objects, %d to copy (%s), %d unchanged since the last backup",
        bucket,
        len(plan_.to_copy) + len(plan_.reused),
        len(plan_.to_copy),
        human_bytes(plan_.copy_bytes),
        len(plan_.reused),
    )
    return plan_, manifest


@task(name="copy-gcs-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def copy_batch(
    settings: BackstopSettings, bucket: str, batch: list[tuple[SourceObject, str]]
) -> list[ManifestEntry]:
    """Server-side copy of one batch of source generations into the pool (idempotent: safe to retry)."""
    return gcs.copy_batch(storage_client(settings.project), bucket, batch, open_store(settings))


@task(name="commit-gcs-backup", cache_policy=NO_CACHE)
def commit(
    settings: BackstopSettings, manifest: BackupManifest, entries: list[ManifestEntry], state: dict[str, Any]
) -> BackupManifest:
    return catalog.commit_backup(open_store(settings), manifest, entries, state)


@task(name="validate-gcs-backup", cache_policy=NO_CACHE)
def validate_backup(
    settings: BackstopSettings, manifest: BackupManifest, sample_percent: float
) -> BackupManifest:
    return gcs.COMPONENT.validate(settings, open_store(settings), manifest, sample_percent)


def backup_bucket(settings: BackstopSettings, bucket: str, prefixes: list[str] | None) -> BackupManifest:
    """Plan, copy in batches with progress, commit; an error abandons the run with no manifest."""
    log = get_run_logger()
    plan_, manifest = plan_backup(settings, bucket, prefixes)
    try:
        work = batches(plan_.to_copy, gcs.BATCH_SIZE)
        progress: Any = create_progress_artifact(0.0, key="gcs-backup-progress", description=f"gs://{bucket}")
        # quote(): Prefect would otherwise walk every object of every batch looking for futures.
        futures = [copy_batch.submit(settings, bucket, quote(batch)) for batch in work]  # type: ignore[call-overload]
        entries: list[ManifestEntry] = list(plan_.reused)
        for done, future in enumerate(as_completed(futures), 1):
            entries += future.result()
            log.info(
                "gs://%s: batch %d/%d copied (%d objects in the backup so far)",
                bucket,
                done,
                len(work),
                len(entries),
            )
            update_progress_artifact(progress, 100.0 * done / len(work))
        if not work:
            update_progress_artifact(progress, 100.0)
        state = gcs.source_state(bucket, prefixes, plan_, entries)
        return commit(settings, manifest, quote(entries), state)  # type: ignore[call-overload]
    except BaseException:
        catalog.abandon_backup(open_store(settings), manifest)
        raise


def summary_row(manifest: BackupManifest) -> dict[str, Any]:
    state = manifest.source_state
    return {
        "bucket": manifest.source,
        "backup_id": manifest.backup_id,
        "objects": state.get("objects"),
        "size": human_bytes(state.get("bytes", 0)),
        "copied": state.get("copied"),
        "copied_size": human_bytes(state.get("copied_bytes", 0)),
        "reused": state.get("reused"),
        "seconds": round(manifest.duration_seconds or 0, 2),
        "status": manifest.status,
    }


@flow(name="backup-gcs", **HOOKS)
def backup_gcs(
    buckets: list[str] | None = None,
    prefixes: list[str] | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = "default",
) -> list[dict[str, Any]]:
    """Back up Cloud Storage buckets (default: settings.gcs_sources), incrementally, then validate.

    Args:
        buckets: source buckets; default the settings' gcs_sources.
        prefixes: only objects under these prefixes.
        validate_after: validate each backup after it is committed (a failed validation fails the run).
        sample_percent: share of objects re-read during validation (default from settings).
        settings_block: name of the Backstop settings block.
    """
    settings = load_settings(settings_block)
    chosen = [check_bucket(b) for b in (buckets or settings.gcs_sources)]
    percent = catalog.sample_percent(settings, sample_percent)
    rows = []
    for bucket in chosen:
        manifest = backup_bucket(settings, bucket, prefixes)
        if validate_after:
            manifest = validate_backup(settings, manifest, percent)
        rows.append(summary_row(manifest))
    create_table_artifact(rows, key="gcs-backup-summary", description="Cloud Storage backup")
    return rows


@flow(name="validate-gcs", **HOOKS)
def validate_gcs(
    backup_id: str | None = None,
    bucket: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = "default",
) -> list[dict[str, Any]]:
    """Validate one backup (by id), or the latest backup of `bucket` / of every configured bucket."""
    settings = load_settings(settings_block)
    store = open_store(settings)
    percent = catalog.sample_percent(settings, sample_percent)
    sources = [check_bucket(bucket)] if bucket else settings.gcs_sources
    manifests = catalog.backups_to_validate(store, gcs.NAME, backup_id, sources)
    rows = []
    for manifest in manifests:
        checked = validate_backup(settings, manifest, percent)
        rows.append(
            summary_row(checked) | {"read_back": checked.validation.read_back if checked.validation else 0}
        )
    create_table_artifact(rows, key="gcs-validation", description="Cloud Storage validation")
    return rows


@flow(name="restore-gcs", **HOOKS)
def restore_gcs(
    bucket: str,
    backup_id: str | None = None,
    before: str | None = None,
    target_bucket: str | None = None,
    objects: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    approved: bool = False,
    skip_damaged: bool = False,
    settings_block: str = "default",
) -> dict[str, Any]:
    """Restore a bucket, a prefix ('logs/') or objects from a backup, to the bucket or another.

    Args:
        bucket: the backed-up bucket.
        backup_id: the backup to restore; default the latest validated one (before `before`).
        before: ISO time; take the latest validated backup started at or before it.
        target_bucket: where to restore (created if missing); default the original bucket.
        objects: object names or prefixes ending in '/' to restore; default everything.
        overwrite: replace objects whose content differs from the backup (never without it).
        dry_run: only report what would be created, overwritten or left alone.
        approved: approve overwriting objects in the original bucket up front; without it such a
            restore pauses for approval in the UI (default deny).
        skip_damaged: restore what is intact when neither the primary nor the secondary copy of the
            backup is whole (the damaged objects are listed); without it such a restore is refused.
    """
    settings = load_settings(settings_block)
    check_bucket(bucket)
    if target_bucket:
        check_bucket(target_bucket)
    # The primary when the backup there is intact, else the secondary copy; the log says which and why.
    moment = parse_time(before) if before else None
    try:
        source = open_for_restore(settings, gcs.NAME, bucket, backup_id, moment)
        store, manifest, from_secondary = source.store, source.manifest, source.from_secondary
        get_run_logger().info(source.message)
    except ValidationFailed:
        if not skip_damaged:
            raise
        store = open_store(settings)
        manifest = catalog.resolve_backup(store, gcs.NAME, bucket, backup_id, moment, validated_only=False)
        from_secondary = False
        get_run_logger().warning(
            "backup %s is damaged: restoring only its intact objects", manifest.backup_id
        )
    if overwrite and not dry_run and (target_bucket or bucket) == bucket:
        plan = gcs.COMPONENT.restore(settings, store, manifest, bucket, objects, True, True, skip_damaged)
        if plan.overwritten:
            require_approval(
                f"restore of backup {manifest.backup_id} overwrites {plan.overwritten} object(s) in gs://{bucket}",
                yes=approved,
            )
    report = gcs.COMPONENT.restore(
        settings, store, manifest, target_bucket, objects, overwrite, dry_run, skip_damaged
    )
    report.from_secondary = from_secondary
    get_run_logger().info(
        "restore of %s to %s: %d created, %d overwritten, %d unchanged, %d conflicts%s",
        manifest.backup_id,
        report.target,
        report.created,
        report.overwritten,
        report.unchanged,
        len(report.conflicts),
        " (dry run)" if dry_run else "",
    )
    create_table_artifact([report.summary()], key="gcs-restore", description="Cloud Storage restore")
    return report.summary()
