"""Post-restore checks of one recovery step, as the operations plan lists them per component.

The component's own check is its `verify_restored`, which the lifecycle runs after every write
(a difference fails the restore with the differences named): row counts and content digests for
BigQuery, objects with sizes, checksums and metadata (content type, the other kept properties, custom
metadata) for Cloud Storage, every file with its checksum for configuration, DAG files (likewise) and
every Airflow variable, connection and pool for Composer, the Backup for
GKE restore's resource and volume counts for GKE. The user's checks from the settings
(`recovery_checks`) run after it: SQL with an expected value for BigQuery, required prefixes with
a minimum object count for Cloud Storage.
"""

from __future__ import annotations

from typing import Any

from backstop.core.recovery import Check
from blocks.clients import bigquery_client, storage_client
from blocks.settings import BackstopSettings

TIMEOUT = 30

# What each component's verify_restored compares (see the module docstring).
COMPONENT_CHECKS = {
    "bigquery": "row counts and content of every table match the backup",
    "gcs": "objects, sizes, checksums and metadata match the backup",
    "configs": "every file present with its checksum (file integrity)",
    "composer": "DAG files and Airflow metadata match the backup",
    "gke": "resource and volume counts of the restore match the backup",
}


def component_check(component: str, problems: list[str]) -> Check:
    """The component's own post-restore check, from the differences its verify_restored found."""
    what = COMPONENT_CHECKS.get(component, "the target matches the backup")
    return Check(name=f"{component}: {what}", passed=not problems, detail="; ".join(problems[:5]))


def user_checks(settings: BackstopSettings, component: str, source: str, target: str) -> list[Check]:
    """The settings' checks of `component` / `source`, run against what was restored at `target`."""
    checks = settings.recovery_checks
    found: list[Check] = []
    if component == "bigquery":
        for item in (c for c in checks.bigquery if c.dataset == source):
            found.append(_sql_check(settings, item.sql.replace("{dataset}", target), item.expected))
    elif component == "gcs":
        for prefix in (c for c in checks.gcs if c.bucket == source):
            found.append(
                _prefix_check(settings, target.removeprefix("gs://"), prefix.prefix, prefix.min_objects)
            )
    return found


def _sql_check(settings: BackstopSettings, sql: str, expected: str) -> Check:
    name = f"bigquery: {sql} = {expected}"
    try:
        rows = list(bigquery_client(settings.project).query(sql, timeout=TIMEOUT).result(timeout=TIMEOUT))
        value: Any = rows[0][0] if rows else None
    except Exception as exc:  # a failing query is a failed check, named
        return Check(name=name, passed=False, detail=f"query failed: {type(exc).__name__}: {exc}"[:500])
    return Check(name=name, passed=str(value) == expected, detail=f"got {value}")


def _prefix_check(settings: BackstopSettings, bucket: str, prefix: str, minimum: int) -> Check:
    name = f"gcs: gs://{bucket}/{prefix} holds at least {minimum} object(s)"
    try:
        blobs = storage_client(settings.project).list_blobs(bucket, prefix=prefix or None, timeout=TIMEOUT)
        count = sum(1 for b in blobs if not b.name.endswith("/"))
    except Exception as exc:
        return Check(name=name, passed=False, detail=f"listing failed: {type(exc).__name__}: {exc}"[:500])
    return Check(name=name, passed=count >= minimum, detail=f"{count} object(s)")
