"""Retention layers agree: data a backup keeps outside the backup bucket lives as long as the backup.

Backstop's retention (backstop/core/retention.py) may keep a backup's manifest for months; the
services that hold part of some backups delete on their own schedule: Backup for GKE after the
plan's `backup_retain_days`, BigQuery a snapshot table at its expiration, Cloud Storage a Composer
snapshot under a bucket lifecycle Delete rule. Backstop sets the first two from its own policy
(`plan_retain_days`, `snapshot_days`); `retention_findings` (run by `backstop preflight`) names every
place where a layer would delete data of a backup Backstop still keeps. Whatever slips through
(a plan edited by hand, a snapshot dropped) is found by re-verification and marked expired.
"""

from __future__ import annotations

from typing import Any

from backstop.core.errors import BackstopError, NotFound
from backstop.core.retention import RetentionPolicy
from blocks.settings import BackstopSettings
from tasks.operations.buckets import Finding


def gke_findings(settings: BackstopSettings, client: Any | None = None) -> list[Finding]:
    """Each GKE cluster's plan retention (settings and live plan) against Backstop's retention of it."""
    if getattr(settings, "gke", None) is None:
        return []
    from tasks.components.gke.api import (
        gke_settings,
        location_path,
        plan_retain_days,
        required_retain_days,
        retention_gap,
    )
    from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors

    gke = gke_settings(settings)
    found = []
    for item in gke.clusters:
        name = f"{location_path(settings, gke)}/backupPlans/{item.plan_id}"
        required, configured = required_retain_days(settings, item), plan_retain_days(settings, item)
        keeps = "without a time limit" if required == 0 else f"up to {required} days"
        what = f"Backstop keeps GKE backups of {item.short_name} {keeps}"
        if retention_gap(configured, required):
            found.append(Finding("error", name, "retention layers", (
                f"settings gke.clusters[{item.short_name}].retain_days is {configured}: Backup for GKE would "
                f"delete backups after {configured} days while {what}; raise it or leave it empty "
                "(Backstop then sets the plan from its retention)"
            )))  # fmt: skip
            continue
        try:
            with converted_errors(f"Backup for GKE plan {name}"):
                plan = _gke_client(client).get_backup_plan(name=name, timeout=TIMEOUT, retry=RETRY)
        except NotFound:
            found.append(Finding("ok", name, "retention layers", f"no plan yet: the first backup creates it "
                                 f"with retain_days {configured} ({what})"))  # fmt: skip
            continue
        except BackstopError as exc:
            found.append(Finding("warning", name, "retention layers", f"plan not readable: {exc}"))
            continue
        live = int(plan.retention_policy.backup_retain_days)
        if retention_gap(live, required):
            found.append(Finding("error", name, "retention layers", (
                f"the plan deletes backups after {live} days while {what}: restore points older than that "
                f"would point at deleted data (the next GKE backup sets it to {configured})"
            )))  # fmt: skip
        else:
            shown = "never deletes" if live == 0 else f"deletes after {live} days"
            found.append(Finding("ok", name, "retention layers", f"the plan {shown}; {what}"))
    return found


def _gke_client(client: Any | None) -> Any:
    from blocks.clients import gke_backup_client

    return client or gke_backup_client()


def bigquery_findings(settings: BackstopSettings) -> list[Finding]:
    """Snapshot expiry of each dataset backed up by the snapshot method (set from the retention)."""
    if settings.bigquery_method != "snapshot":
        return []
    from tasks.components.bigquery.snapshot import snapshot_dataset, snapshot_days

    found = []
    for dataset in settings.bigquery_datasets:
        days = snapshot_days(settings, dataset)
        shown = "never expire" if days is None else f"expire after {days} days"
        found.append(Finding("ok", f"{settings.project}.{snapshot_dataset(dataset)}", "retention layers",
                             f"new snapshot tables {shown}, past Backstop's retention of bigquery/{dataset}"))  # fmt: skip
    return found


def composer_findings(settings: BackstopSettings, storage: Any) -> list[Finding]:
    """A lifecycle Delete rule on the Composer snapshot bucket younger than Backstop's retention."""
    cs = settings.composer
    if not cs.snapshot or not cs.environments:
        return []
    if not cs.snapshot_location:
        return [Finding("warning", "-", "retention layers", (
            "Composer snapshots go to each environment's own bucket, whose lifecycle rules Backstop does "
            "not check: set composer.snapshot_location to a folder Backstop checks"
        ))]  # fmt: skip
    bucket, _, folder = cs.snapshot_location.removeprefix("gs://").partition("/")
    required = max(
        RetentionPolicy.from_settings(
            settings.retention_for("composer", env.rsplit("/", 1)[-1])
        ).kept_for_days()
        for env in cs.environments
    )
    try:
        rules = list(storage.get_bucket(bucket).lifecycle_rules)
    except Exception as exc:  # noqa: BLE001 - any failure is a finding, not a crash of preflight
        return [
            Finding("warning", f"gs://{bucket}", "retention layers", f"lifecycle rules not readable: {exc}")
        ]
    ages = [
        int(r["condition"]["age"])
        for r in rules
        if r.get("action", {}).get("type") == "Delete"
        and "age" in r.get("condition", {})
        and any(
            folder.startswith(p) or p.startswith(folder) for p in r["condition"].get("matchesPrefix", [""])
        )
    ]
    if ages and (required == 0 or min(ages) < required):
        keeps = "without a time limit" if required == 0 else f"up to {required} days"
        return [Finding("error", f"gs://{bucket}", "retention layers", (
            f"a lifecycle rule deletes Composer snapshots after {min(ages)} days while Backstop keeps "
            f"Composer backups {keeps}"
        ))]  # fmt: skip
    return [
        Finding(
            "ok", f"gs://{bucket}", "retention layers", "no lifecycle rule deletes Composer snapshots early"
        )
    ]


def retention_findings(
    settings: BackstopSettings, storage: Any, gke_client: Any | None = None
) -> list[Finding]:
    """Every retention-layer finding: GKE plans, BigQuery snapshots, Composer snapshots."""
    return (
        gke_findings(settings, gke_client)
        + bigquery_findings(settings)
        + composer_findings(settings, storage)
    )
