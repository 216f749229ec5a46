"""Harden the backup buckets so that a mistake or a stolen account cannot delete young backups.

`harden_bucket(client, bucket, retention_days, lock, dry_run)` compares one bucket with what it
should be and changes only what differs (a second run changes nothing and says so):
- uniform bucket-level access on (no object ACLs: access is decided by IAM alone);
- public access prevention "enforced" (no allUsers / allAuthenticatedUsers grant can work);
- soft delete kept: turned back on (7 days) when off, never shortened;
- object versioning turned off when a retention policy is to be set (Cloud Storage refuses the
  two together; soft delete keeps deleted objects recoverable, and no backup relies on versions);
- a bucket retention policy of at least `retention_days`: no object younger than that can be
  deleted or replaced by anyone, Backstop's prune included (prune reports such objects as kept
  by the bucket). Never shortened (that would weaken it) and never removed;
- locked only when `lock` is asked for. Locking is irreversible: a locked policy can never be
  shortened or removed, and the bucket cannot be deleted while it holds objects younger than it.

`shortest_retention_days(settings)` (pure) is the period: the shortest age at which the settings'
own keep rules may let a backup go, so the policy never keeps less than the settings promise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from backstop.core.errors import Conflict
from backstop.core.retention import keep_rule_spans
from blocks.settings import BackstopSettings
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors

DEFAULT_SOFT_DELETE_SECONDS = 7 * 86400
# When every policy keeps by count only, nothing bounds a backup's age: one day still stops a
# script from emptying the bucket the day it runs.
COUNT_ONLY_FLOOR_DAYS = 1.0


def shortest_retention_days(settings: BackstopSettings) -> tuple[float, str]:
    """(days, why): the shortest keep window of any retention policy in the settings.

    A backup kept by a rule of N days can be removed by prune once it is N days old; a retention
    policy of the shortest such N therefore never stops prune from applying the settings, and
    keeps every object at least that long whatever anyone does.
    """
    policies = {"default": settings.retention, **settings.retention_overrides}
    found = [
        (days, f"{rule}={getattr(retention, rule)} of the {scope} policy")
        for scope, retention in policies.items()
        for rule, days in keep_rule_spans(retention, "shortest")
    ]
    if not found:
        return COUNT_ONLY_FLOOR_DAYS, "every policy keeps by count only: a floor of 1 day"
    days, why = min(found)
    return days, why


@dataclass(frozen=True)
class Change:
    """One setting of one bucket: what it is, what it should be, and whether it was changed."""

    bucket: str
    setting: str
    before: str
    after: str
    changed: bool
    kept: bool = True  # False: the bucket read back after the change does not show it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _soft_delete_seconds(found: Any) -> int:
    policy = found._properties.get("softDeletePolicy") or {}
    return int(policy.get("retentionDurationSeconds") or 0)


def harden_bucket(
    client: Any, bucket: str, retention_days: float, lock: bool = False, dry_run: bool = False
) -> list[Change]:
    """Bring `bucket` to the hardened configuration; returns one Change per setting.

    A locked policy shorter than `retention_days` is lengthened (the only change a lock allows).
    With `dry_run`, nothing changes and the Changes say what would. After a change the bucket is
    read back: a setting it did not keep has `kept=False` (fake-gcs-server keeps none of them).
    """
    seconds = int(retention_days * 86400)
    with converted_errors(f"hardening gs://{bucket}"):
        found = client.get_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
        changes = _planned_changes(bucket, found, seconds, lock)
        if dry_run or not any(c.changed for c in changes):
            return changes
        _apply(bucket, found, seconds, lock)
        again = {c.setting: c for c in harden_bucket(client, bucket, retention_days, lock, dry_run=True)}
    return [
        Change(c.bucket, c.setting, c.before, c.after, c.changed, kept=not again[c.setting].changed)
        if c.setting in again
        else c
        for c in changes
    ]


def _planned_changes(bucket: str, found: Any, seconds: int, lock: bool) -> list[Change]:
    """What differs between the bucket as `found` and the hardened configuration."""
    iam = found.iam_configuration
    period = int(found.retention_period or 0)
    locked = bool(found.retention_policy_locked)
    soft = _soft_delete_seconds(found)
    changes = [
        Change(
            bucket,
            "uniform bucket-level access",
            "on" if iam.uniform_bucket_level_access_enabled else "off",
            "on",
            not iam.uniform_bucket_level_access_enabled,
        ),
        Change(
            bucket,
            "public access prevention",
            str(iam.public_access_prevention),
            "enforced",
            iam.public_access_prevention != "enforced",
        ),
        Change(
            bucket,
            "soft delete",
            f"{soft / 86400:g} days" if soft else "off",
            f"{(soft or DEFAULT_SOFT_DELETE_SECONDS) / 86400:g} days",
            soft == 0,
        ),
        Change(
            bucket,
            "retention policy",
            f"{period / 86400:g} days" + (" (locked)" if locked else "") if period else "none",
            f"{max(period, seconds) / 86400:g} days" + (" (locked)" if locked else ""),
            period < seconds,
        ),
    ]
    if found.versioning_enabled and period < seconds:
        # Cloud Storage refuses a retention policy on a versioned bucket; soft delete keeps
        # deleted objects recoverable instead, and Backstop's pool never relies on versions.
        changes.insert(
            2, Change(bucket, "object versioning", "on", "off (needed by the retention policy)", True)
        )
    if lock:
        changes.append(
            Change(bucket, "retention lock", "locked" if locked else "not locked", "locked", not locked)
        )
    return changes


def _apply(bucket: str, found: Any, seconds: int, lock: bool) -> None:
    """Change what differs: access, soft delete, versioning (first), the policy, then the lock."""
    iam = found.iam_configuration
    period = int(found.retention_period or 0)
    patched = False
    if not iam.uniform_bucket_level_access_enabled or iam.public_access_prevention != "enforced":
        iam.uniform_bucket_level_access_enabled = True
        iam.public_access_prevention = "enforced"
        patched = True
    if _soft_delete_seconds(found) == 0:
        found.soft_delete_policy.retention_duration_seconds = DEFAULT_SOFT_DELETE_SECONDS
        patched = True
    if found.versioning_enabled and period < seconds:
        found.versioning_enabled = False
        found.patch(timeout=TIMEOUT, retry=RETRY)  # first: the policy is refused while versioning is on
    if period < seconds:  # a locked policy may still be lengthened
        found.retention_period = seconds
        patched = True
    if patched:
        found.patch(timeout=TIMEOUT, retry=RETRY)
    if lock and not found.retention_policy_locked:
        if not found.retention_period:
            raise Conflict(f"gs://{bucket}: no retention policy to lock")
        found.reload(timeout=TIMEOUT, retry=RETRY)  # the lock call needs the current metageneration
        found.lock_retention_policy(timeout=TIMEOUT, retry=RETRY)
