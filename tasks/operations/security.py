"""Preflight's security checks of the backup buckets (the rest of the checks are in tasks/operations/buckets.py).

- public access: an IAM binding to allUsers / allAuthenticatedUsers, or a public ACL while
  uniform bucket-level access is off, is an error; public access prevention not enforced and
  uniform bucket-level access off are warnings (`backstop harden` sets both);
- retention: no bucket retention policy, or one shorter than the shortest retention the settings
  allow, is a warning (`backstop harden`); an unlocked policy is a warning (an account that may
  update the bucket may remove it; `backstop harden --lock-retention --yes` locks it);
- keys: a KMS key in another location than its bucket is an error (Cloud Storage refuses to use
  it: writes fail), and so is a secondary bucket not in `settings.secondary_location`;
- holds: the newest validated backup of a source not under a hold is a warning;
- object retention: settings.object_retention off, or a bucket without object retention enabled, is a
  warning (backups are then not locked until their keep date, tasks/catalog/locks.py);
- trust domain: backup buckets in the production project are a warning (`backup_project`), a
  secondary copy written with the primary's credentials an error.
"""

from __future__ import annotations

import re
from typing import Any

from backstop.core.errors import BackstopError
from blocks.settings import BackstopSettings
from tasks.catalog.holds import unheld_newest
from tasks.engine.protocol import component_parts
from tasks.operations.buckets import Finding, bucket_facts
from tasks.operations.harden import shortest_retention_days
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}


def access_facts(client: Any, bucket: str) -> dict[str, Any]:
    """Uniform access, public access prevention, and who is granted anything publicly."""
    with converted_errors(f"bucket gs://{bucket}"):
        found = client.get_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
    iam = found.iam_configuration
    facts: dict[str, Any] = {
        "ubla": bool(iam.uniform_bucket_level_access_enabled),
        "pap": str(iam.public_access_prevention),
        "public_grants": [],
        "iam_error": None,
    }
    try:
        with converted_errors(f"IAM policy of gs://{bucket}"):
            policy = found.get_iam_policy(requested_policy_version=3, timeout=TIMEOUT, retry=RETRY)
        facts["public_grants"] = [
            f"{binding['role']} to {member}"
            for binding in policy.bindings
            for member in sorted(binding.get("members") or [])
            if member in PUBLIC_MEMBERS
        ]
    except BackstopError as exc:
        facts["iam_error"] = str(exc)
    if not facts["ubla"]:
        facts["public_grants"] += [
            f"ACL {entry.get('role')} to {entry.get('entity')}"
            for entry in found._properties.get("acl") or []
            if entry.get("entity") in PUBLIC_MEMBERS
        ]
    return facts


def key_location(key: str | None) -> str | None:
    """The location inside a KMS key name (projects/p/locations/L/keyRings/...), lower case."""
    match = re.search(r"/locations/([^/]+)/", key or "")
    return match.group(1).lower() if match else None


def bucket_security_findings(
    name: str, role: str, access: dict[str, Any], facts: dict[str, Any], settings: BackstopSettings
) -> list[Finding]:
    """The security findings of one backup bucket (`facts` from tasks.operations.buckets.bucket_facts)."""
    return [
        *_public_findings(name, access),
        _retention_policy_finding(name, facts, settings),
        _object_retention_finding(name, facts, settings),
        *_key_findings(name, role, facts, settings),
        *_location_findings(name, role, facts, settings),
    ]


def _public_findings(name: str, access: dict[str, Any]) -> list[Finding]:
    """Public grants, public access prevention, uniform bucket-level access."""
    if access["public_grants"]:
        out = [
            Finding(
                "error",
                name,
                "public access",
                "backup storage is public: " + "; ".join(access["public_grants"]),
            )
        ]
    elif access["pap"] == "enforced":
        out = [Finding("ok", name, "public access", "public access prevention enforced; no public grant")]
    else:
        out = [
            Finding(
                "warning",
                name,
                "public access",
                f"no public grant, but public access prevention is {access['pap']} (run `backstop harden`)",
            )
        ]
    if access["iam_error"]:
        out.append(
            Finding("warning", name, "public access", f"IAM policy not checked: {access['iam_error']}")
        )
    if not access["ubla"]:
        out.append(
            Finding(
                "warning",
                name,
                "uniform access",
                "object ACLs are on: access is not decided by IAM alone (run `backstop harden`)",
            )
        )
    return out


def _retention_policy_finding(name: str, facts: dict[str, Any], settings: BackstopSettings) -> Finding:
    """The bucket retention policy against the shortest retention the settings allow, and its lock."""
    days, why = shortest_retention_days(settings)
    held = facts["retention_seconds"] / 86400
    if not facts["retention_seconds"]:
        return Finding(
            "warning",
            name,
            "retention lock",
            "no retention policy: any account that may delete objects can delete every backup (run `backstop harden`)",
        )
    if held < days:
        return Finding(
            "warning",
            name,
            "retention lock",
            f"retention policy of {held:g} days, shorter than the {days:g} days the settings allow ({why})",
        )
    if not facts["retention_locked"]:
        return Finding(
            "warning",
            name,
            "retention lock",
            f"{held:g}-day retention policy not locked: an account that may update the bucket can remove it "
            "(`backstop harden --lock-retention --yes` locks it, irreversibly)",
        )
    return Finding("ok", name, "retention lock", f"{held:g}-day retention policy, locked")


def _object_retention_finding(name: str, facts: dict[str, Any], settings: BackstopSettings) -> Finding:
    """Whether backups are locked until their keep date (tasks/catalog/locks.py)."""
    if settings.object_retention == "off":
        return Finding(
            "warning",
            name,
            "object retention",
            "settings.object_retention is off: backups kept longer than the bucket retention policy can be "
            "deleted by any account that may delete objects",
        )
    if facts.get("object_retention") != "Enabled":
        return Finding(
            "warning",
            name,
            "object retention",
            "the bucket has no object retention enabled: backups are not locked until their keep date "
            "(create the backup bucket with object retention: `backstop bootstrap` does for a new bucket)",
        )
    if settings.object_retention == "unlocked":
        return Finding(
            "ok",
            name,
            "object retention",
            "every backup is retained until its keep date (Unlocked: an account with "
            "storage.objects.overrideUnlockedRetention can still shorten it; production: object_retention=locked)",
        )
    return Finding("ok", name, "object retention", "every backup is retained until its keep date, Locked")


def _key_findings(name: str, role: str, facts: dict[str, Any], settings: BackstopSettings) -> list[Finding]:
    """A KMS key in another location than its bucket cannot be used."""
    key = facts["default_kms_key"] or (
        (settings.secondary_kms_key_name or settings.kms_key_name)
        if role == "secondary"
        else settings.kms_key_name
    )
    where = key_location(key)
    if key and where and where != facts["location"].lower():
        return [
            Finding(
                "error",
                name,
                "key location",
                f"KMS key {key} is in {where}, the bucket in {facts['location'].lower()}: Cloud Storage cannot use it",
            )
        ]
    if key and where:
        return [Finding("ok", name, "key location", f"KMS key in the bucket's location ({where})")]
    return []


def _location_findings(
    name: str, role: str, facts: dict[str, Any], settings: BackstopSettings
) -> list[Finding]:
    """The secondary bucket in the settings' secondary_location."""
    wanted = settings.secondary_location if role == "secondary" else settings.location
    if role == "secondary" and not wanted:
        return [
            Finding(
                "warning",
                name,
                "secondary location",
                "settings name no secondary_location: set another region",
            )
        ]
    if role == "secondary" and wanted and wanted.upper() != facts["location"]:
        return [
            Finding(
                "error",
                name,
                "secondary location",
                f"secondary bucket is in {facts['location']}, settings.secondary_location says {wanted.upper()}",
            )
        ]
    return []


def trust_findings(settings: BackstopSettings) -> list[Finding]:
    """Whether the backups sit in their own trust domain: their own project, and a secondary copy
    written by another identity than the primary (pure: from the settings)."""
    bucket = settings.backup_bucket
    if not settings.backup_project or settings.backup_project == settings.project:
        out = [
            Finding(
                "warning",
                bucket,
                "backup project",
                f"backup buckets in the production project {settings.project}: its owners and any account with a "
                "project storage role reach the backups (set backup_project to a project of their own)",
            )
        ]
    else:
        out = [
            Finding(
                "ok",
                bucket,
                "backup project",
                f"backups in project {settings.backup_project}, apart from {settings.project}",
            )
        ]
    if settings.secondary_bucket and settings.secondary_credentials_block:
        same = settings.secondary_credentials_block == settings.credentials_block
        out.append(
            Finding(
                "error" if same else "ok",
                settings.secondary_bucket,
                "secondary identity",
                "the secondary copy is written with the same credentials as the primary: one stolen key reaches both"
                if same
                else f"the secondary copy is written by its own identity (gcp-credentials/{settings.secondary_credentials_block})",
            )
        )
    return out


def hold_findings(client: Any, settings: BackstopSettings, bucket: str) -> list[Finding]:
    """Whether the latest restore point of every source in `bucket` is held (tasks/catalog/holds.py)."""
    if not settings.hold_newest_validated:
        return [Finding("warning", bucket, "holds", "hold_newest_validated is off: no backup is held")]
    unheld = unheld_newest(BackupStore(client, bucket), component_parts)
    if not unheld:
        return [
            Finding("ok", bucket, "holds", "the newest validated backup of every source (and part) is held")
        ]
    return [
        Finding(
            "warning",
            bucket,
            "holds",
            f"newest validated backup of {m.component}/{m.source} ({m.backup_id}) is not held: the next prune "
            "holds it (or the validator may not place holds)",
        )
        for m in unheld
    ]


def preflight_security(client: Any, settings: BackstopSettings) -> list[Finding]:
    """Security findings of both backup buckets; a bucket that cannot be read is left to tasks.operations.buckets."""
    findings: list[Finding] = trust_findings(settings)
    for role, bucket in (("primary", settings.backup_bucket), ("secondary", settings.secondary_bucket)):
        if not bucket:
            continue
        try:
            facts = bucket_facts(client, bucket)
            access = access_facts(client, bucket)
            findings += bucket_security_findings(bucket, role, access, facts, settings)
            findings += hold_findings(client, settings, bucket)
        except BackstopError:
            continue  # tasks.operations.buckets.preflight reports it as an error
    return findings
