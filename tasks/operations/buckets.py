"""The backup buckets themselves: storage-class tiers (lifecycle rules) and the preflight check.

- `lifecycle_rules(settings)` (pure) builds SetStorageClass rules per component prefix: Nearline
  after 30 days, Coldline after 90 by default. No delete rule by default: the retention policy
  decides what goes (an age-based delete would remove the newest validated backup of a source
  that stopped producing backups). `ensure_lifecycle` puts them on a bucket, keeping rules that
  are not about Backstop's prefixes.
- `tier_warnings(settings)` (pure) warns when a retention window ends before a tier's minimum
  storage duration is over (Nearline 30 d, Coldline 90 d, Archive 365 d): deleting earlier is
  billed as early deletion.
- `preflight(client, settings)` reads each backup bucket's versioning, soft delete, retention
  policy and lock, default KMS key, location and location type, and warns on risky combinations;
  a secondary in the primary's location or under the primary's key is an error. The security
  checks (public access, uniform access, retention lock, key locations) are in tasks/operations/security.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from backstop.core.errors import BackstopError, Conflict, InvalidInput
from backstop.core.retention import keep_rule_spans
from blocks.components import DEFAULT_COMPONENTS, TierSettings
from blocks.settings import BackstopSettings
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors

MIN_STORAGE_DAYS = {"NEARLINE": 30, "COLDLINE": 90, "ARCHIVE": 365}


def tiers_of(settings: BackstopSettings) -> TierSettings:
    tiers = getattr(settings, "tiers", None)
    return tiers if isinstance(tiers, TierSettings) else TierSettings.model_validate(tiers or {})


def _tiers(tiers: TierSettings) -> list[tuple[str, int]]:
    steps = [
        ("NEARLINE", tiers.nearline_after_days),
        ("COLDLINE", tiers.coldline_after_days),
        ("ARCHIVE", tiers.archive_after_days),
    ]
    return [(cls, age) for cls, age in steps if age is not None]


def lifecycle_rules(settings: BackstopSettings, tiers: TierSettings | None = None) -> list[dict[str, Any]]:
    """Lifecycle rules (Cloud Storage JSON form) per component prefix and its pool prefix."""
    tiers = tiers or tiers_of(settings)
    rules: list[dict[str, Any]] = []
    warmer = ["STANDARD"]
    for storage_class, age in _tiers(tiers):
        for component in tiers.components:
            rules.append(
                {
                    "action": {"type": "SetStorageClass", "storageClass": storage_class},
                    "condition": {
                        "age": age,
                        "matchesPrefix": [f"{component}/", f"pool/{component}/"],
                        "matchesStorageClass": list(warmer),
                    },
                }
            )
        warmer.append(storage_class)
    if tiers.delete_after_days is not None:
        prefixes = [p for c in tiers.components for p in (f"{c}/", f"pool/{c}/")]
        rules.append(
            {
                "action": {"type": "Delete"},
                "condition": {"age": tiers.delete_after_days, "matchesPrefix": prefixes},
            }
        )
    return rules


def _ours(rule: dict[str, Any], components: Iterable[str]) -> bool:
    prefixes = rule.get("condition", {}).get("matchesPrefix") or []
    mine = {p for c in components for p in (f"{c}/", f"pool/{c}/")}
    return bool(prefixes) and all(p in mine for p in prefixes)


def ensure_lifecycle(
    client: Any, bucket: str, rules: list[dict[str, Any]], components: Iterable[str] = DEFAULT_COMPONENTS
) -> bool:
    """Make `rules` the bucket's rules for Backstop's prefixes; keep other rules. Returns True if changed."""
    with converted_errors(f"lifecycle rules of gs://{bucket}"):
        found = client.get_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
        existing = [dict(rule) for rule in found.lifecycle_rules]
        wanted = [rule for rule in existing if not _ours(rule, components)] + rules
        if existing == wanted:
            return False
        found.lifecycle_rules = wanted
        found.patch(timeout=TIMEOUT, retry=RETRY)
    return True


def ensure_retention_policy(client: Any, bucket: str, days: float) -> bool:
    """Give `bucket` a retention policy of at least `days` (objects cannot be deleted or replaced younger).

    Never locks it: a locked policy cannot be shortened or removed, which is a decision for a person
    (`gcloud storage buckets update --lock-retention-period`). Returns True if the policy changed.
    """
    if days <= 0:
        raise InvalidInput(f"retention policy for gs://{bucket}: days must be > 0, got {days}")
    seconds = int(days * 86400)
    with converted_errors(f"retention policy of gs://{bucket}"):
        found = client.get_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
        if (found.retention_period or 0) >= seconds:
            return False
        if found.retention_policy_locked:
            raise Conflict(
                f"gs://{bucket}: the retention policy is locked at {found.retention_period} s; it cannot change"
            )
        found.retention_period = seconds
        found.patch(timeout=TIMEOUT, retry=RETRY)
    return True


def tier_warnings(settings: BackstopSettings, tiers: TierSettings | None = None) -> list[str]:
    """Retention windows that end inside a tier's minimum storage duration (early-deletion charges).

    An object moved to a colder class at age A and deleted at age L is billed as if kept until
    A + minimum duration when L falls short of it (the conservative reading: the clock may restart
    at the class change). Objects deleted before age A never reach that class and cost nothing extra.
    """
    tiers = tiers or tiers_of(settings)
    policies = {"default": settings.retention, **settings.retention_overrides}
    warnings = []
    for scope, retention in policies.items():
        # the latest age a backup kept only by `rule` is removed at (31-day months, 366-day years)
        for rule, lifetime in keep_rule_spans(retention, "longest"):
            for storage_class, age in _tiers(tiers):
                minimum = MIN_STORAGE_DAYS[storage_class]
                if age < lifetime < age + minimum:
                    warnings.append(
                        f"retention {scope}: backups kept by {rule} are removed at ~{lifetime:g} days, after moving to "
                        f"{storage_class} at {age} days but before its {minimum}-day minimum storage duration: "
                        "early-deletion charges"
                    )
    return warnings


@dataclass(frozen=True)
class Finding:
    """One preflight observation about a bucket."""

    level: Literal["ok", "warning", "error"]
    bucket: str
    check: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def bucket_facts(client: Any, bucket: str) -> dict[str, Any]:
    """The configuration of `bucket` that matters for backups (raises NotFound when absent)."""
    with converted_errors(f"bucket gs://{bucket}"):
        found = client.get_bucket(bucket, timeout=TIMEOUT, retry=RETRY)
    retention = found._properties.get("retentionPolicy") or {}
    soft = found._properties.get("softDeletePolicy") or {}
    return {
        "location": (found.location or "").upper(),
        "location_type": found.location_type or "",
        "versioning": bool(found.versioning_enabled),
        "soft_delete_seconds": int(soft.get("retentionDurationSeconds") or 0),
        "retention_seconds": int(retention.get("retentionPeriod") or 0),
        "retention_locked": bool(retention.get("isLocked")),
        "default_kms_key": found.default_kms_key_name,
        "object_retention": found.object_retention_mode,
    }


def _bucket_findings(
    name: str, role: str, facts: dict[str, Any], settings: BackstopSettings
) -> list[Finding]:
    return [
        *_durability_findings(name, role, facts),
        *_retention_policy_findings(name, role, facts, settings),
        _kms_finding(name, role, facts, settings),
    ]


def _durability_findings(name: str, role: str, facts: dict[str, Any]) -> list[Finding]:
    """Where the bucket is, and whether a deleted object can come back (versioning, soft delete)."""
    return [
        Finding(
            "ok",
            name,
            "location",
            f"{role} bucket in {facts['location']} ({facts['location_type'] or 'unknown type'})",
        ),
        Finding(
            "ok" if facts["versioning"] or facts["soft_delete_seconds"] else "warning",
            name,
            "versioning",
            "object versioning on"
            if facts["versioning"]
            else "object versioning off"
            + ("" if facts["soft_delete_seconds"] else ": a deleted backup object is gone for good"),
        ),
        Finding(
            "ok" if facts["soft_delete_seconds"] else "warning",
            name,
            "soft delete",
            f"soft delete keeps deleted objects {facts['soft_delete_seconds'] / 86400:g} days"
            if facts["soft_delete_seconds"]
            else "soft delete off: deleted objects cannot be recovered",
        ),
    ]


def _retention_policy_findings(
    name: str, role: str, facts: dict[str, Any], settings: BackstopSettings
) -> list[Finding]:
    """The bucket retention policy, and what it means for BigQuery extracts into the bucket."""
    if not facts["retention_seconds"]:
        return [
            Finding(
                "ok",
                name,
                "retention policy",
                "no bucket retention policy (objects can be deleted at any time)",
            )
        ]
    lock = "locked" if facts["retention_locked"] else "not locked"
    out = [
        Finding(
            "ok",
            name,
            "retention policy",
            f"{facts['retention_seconds'] / 86400:g}-day retention policy ({lock}): prune cannot delete younger objects",
        )
    ]
    if role == "primary" and settings.bigquery_method == "extract":
        out.append(
            Finding(
                "warning",
                name,
                "bigquery extract",
                f"BigQuery extracts into this bucket, whose retention policy is {lock}: extract jobs that "
                "overwrite or clean up files fail"
                + (" and the lock can never be removed" if facts["retention_locked"] else ""),
            )
        )
    return out


def _kms_finding(name: str, role: str, facts: dict[str, Any], settings: BackstopSettings) -> Finding:
    """The bucket's default KMS key against the settings' key for this copy."""
    key = facts["default_kms_key"]
    wanted = (
        (settings.secondary_kms_key_name or settings.kms_key_name)
        if role == "secondary"
        else settings.kms_key_name
    )
    if wanted and not key:
        return Finding(
            "warning",
            name,
            "kms",
            f"settings want CMEK ({wanted}) but the bucket has no default KMS key: objects "
            "written by other tools (BigQuery extracts) are Google-encrypted",
        )
    if wanted and key != wanted:
        return Finding("warning", name, "kms", f"bucket default KMS key {key} differs from the settings' key")
    return Finding("ok", name, "kms", f"default KMS key {key}" if key else "Google-managed encryption")


def preflight(client: Any, settings: BackstopSettings) -> list[Finding]:
    """Check the backup buckets' configuration; findings are ok / warning / error, never raised."""
    findings: list[Finding] = []
    facts: dict[str, dict[str, Any]] = {}
    for role, bucket in (("primary", settings.backup_bucket), ("secondary", settings.secondary_bucket)):
        if not bucket:
            findings.append(
                Finding(
                    "warning",
                    "-",
                    "secondary",
                    "no secondary bucket: no copy survives the loss of the primary's region",
                )
            )
            continue
        try:
            facts[role] = bucket_facts(client, bucket)
        except BackstopError as exc:
            findings.append(Finding("error", bucket, "exists", f"{role} bucket: {exc}"))
            continue
        findings += _bucket_findings(bucket, role, facts[role], settings)
    primary, secondary = facts.get("primary"), facts.get("secondary")
    if primary and secondary and primary["location"] == secondary["location"]:
        findings.append(
            Finding(
                "error",
                settings.secondary_bucket or "-",
                "secondary location",
                f"secondary bucket is in the same location as the primary ({primary['location']}): no disaster "
                "recovery (create it in settings.secondary_location, another region)",
            )
        )
    elif primary and secondary:
        findings.append(
            Finding(
                "ok",
                settings.secondary_bucket or "-",
                "secondary location",
                f"secondary in {secondary['location']}, primary in {primary['location']}",
            )
        )
    if primary and secondary:
        keys = {
            "primary": primary["default_kms_key"] or settings.kms_key_name,
            "secondary": secondary["default_kms_key"]
            or settings.secondary_kms_key_name
            or settings.kms_key_name,
        }
        if keys["primary"] and keys["primary"] == keys["secondary"]:
            findings.append(
                Finding(
                    "error",
                    settings.secondary_bucket or "-",
                    "secondary key",
                    f"both copies are encrypted with the same KMS key ({keys['primary']}): losing or disabling "
                    "it loses both (set secondary_kms_key_name to a key in the secondary location)",
                )
            )
    if (
        primary
        and not secondary
        and primary["location_type"] == "region"
        and primary["location"] == settings.location.upper()
    ):
        findings.append(
            Finding(
                "warning",
                settings.backup_bucket,
                "location",
                f"single-region backup bucket in the data's own region ({primary['location']}) and no secondary: "
                "a regional outage takes the data and its backups",
            )
        )
    return findings
