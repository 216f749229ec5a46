"""Which backups to keep and which to remove, with a reason for each. Pure: no Prefect, no I/O.

Like restic's `ApplyPolicy`: `apply_policy(backups, policy, now, parts)` takes the backups of ONE
(component, source) group and returns a `RetentionPlan` whose `keep` and `remove` lists partition
the input, every entry with its reason(s). `plan_groups` splits a catalog into those groups.

Part by part. A source backed up in parts on their own schedules (Cloud Composer: DAGs and config
daily, metadata hourly; backstop/core/restore_points.py) is restored from the newest backup of each
part, so the rules below apply to each part on its own, over the backups that hold it: the newest
DAG backup of each day is that day's daily keeper for `dags` although 23 metadata backups follow it,
and the floor keeps the newest validated backup of every part. A backup is removed only when no part
keeps it. (Applied to the source as a whole, hourly metadata backups took every keep slot and a
weekly prune removed every DAG backup.) A component without parts has one part, the whole source.

Rules, newest first (by start time, then backup id):
- A backup that has not finished (status "in_progress", or no finish time) is kept.
- Invalid backups (validation failed) count for nothing: they take no keep_last slot and no
  daily/weekly/... bucket. They are removed only once a newer validated backup exists, so the
  last evidence of a failing source is not thrown away before something good replaces it.
- Every other backup (complete or validated) is a candidate for the keep rules:
  keep_last N keeps the N newest; keep_daily / weekly / monthly / yearly N keep the newest
  backup of each of the N newest days / ISO weeks / months / years that have a backup (UTC);
  keep_within_days keeps every backup started less than that long before `now`.
- The floor: the newest `min_validated` validated backups are always kept, whatever the rules
  say. A policy with no keep rule at all keeps everything (an empty policy is a mistake, never
  an instruction to delete).

The plan is idempotent: applying the same policy (and `now`) to the kept backups removes nothing.

Never removing data a newer incremental backup needs is NOT decided here, on purpose: Cloud
Storage backups share stored copies through a pool keyed by source generation (a newer backup's
manifest references the copies an older run stored). Prune deletes a removed backup's manifest
first and then only deletes stored objects that no remaining manifest references (mark and
sweep, `tasks.operations.prune`), so removing an old backup never removes data a newer backup still needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from backstop.core.catalog_index import parts_of, scope_of
from backstop.core.errors import InvalidInput
from backstop.core.manifest import MANIFEST_NAME, BackupManifest, backup_time
from backstop.core.names import BACKUP_ID
from backstop.core.restore_points import declared, holds


@dataclass(frozen=True)
class BackupRef:
    """What retention needs to know about one backup."""

    backup_id: str
    started_at: datetime
    validated: bool
    status: str = "complete"
    component: str = ""
    source: str = ""
    parts: tuple[str, ...] | None = None  # the parts it holds (None: every part of its component)
    scope: tuple[str, ...] | None = None  # what a backup of part of the source holds (None: all of it)

    @property
    def finished(self) -> bool:
        return self.status != "in_progress"

    @property
    def invalid(self) -> bool:
        """Damaged or expired (its data outside the bucket gone): it counts for nothing."""
        return self.status in ("invalid", "expired")


def ref_of(manifest: BackupManifest) -> BackupRef:
    """The BackupRef of a manifest (a manifest without a finish time is still in progress)."""
    return BackupRef(
        backup_id=manifest.backup_id,
        started_at=manifest.started_at,
        validated=manifest.validated,
        status=manifest.status if manifest.finished_at is not None else "in_progress",
        component=manifest.component,
        source=manifest.source,
        parts=None if (held := parts_of(manifest)) is None else tuple(held),
        scope=None if (scope := scope_of(manifest)) is None else tuple(scope),
    )


@dataclass(frozen=True)
class RetentionPolicy:
    """Mirror of blocks.settings.RetentionSettings (kept here so this module stays pure)."""

    keep_last: int = 3
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12
    keep_yearly: int = 0
    keep_within_days: float = 0
    min_validated: int = 1

    def __post_init__(self) -> None:
        for name in (
            "keep_last",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "keep_yearly",
            "keep_within_days",
        ):
            if getattr(self, name) < 0:
                raise InvalidInput(f"retention policy: {name} must be >= 0, got {getattr(self, name)}")
        if self.min_validated < 1:
            raise InvalidInput(f"retention policy: min_validated must be >= 1, got {self.min_validated}")

    @classmethod
    def from_settings(cls, settings: Any) -> RetentionPolicy:
        """Build from a RetentionSettings model (or any object / mapping with the same fields)."""
        data = settings.model_dump() if hasattr(settings, "model_dump") else dict(settings)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def empty(self) -> bool:
        return not any(
            (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly)
        ) and not (self.keep_within_days > 0)

    def kept_for_days(self) -> int:
        """The longest a backup can be kept by the time rules: how long data a backup holds outside
        the bucket (a Backup for GKE backup, a BigQuery snapshot) must live so that no kept backup
        outlives it. A day, ISO week, month and year count 1, 7, 31 and 366 days, plus the day the
        rule is counted from. `keep_last` / `min_validated` count backups, not days: a backup they
        keep past this horizon (backups stopped) is found expired by re-verification instead.
        """
        spans = (
            self.keep_daily,
            self.keep_weekly * 7,
            self.keep_monthly * 31,
            self.keep_yearly * 366,
            math.ceil(self.keep_within_days),
        )
        longest = max(spans)
        return longest + 1 if longest else 0

    def describe(self) -> str:
        parts = [
            f"last {self.keep_last}",
            f"daily {self.keep_daily}",
            f"weekly {self.keep_weekly}",
            f"monthly {self.keep_monthly}",
            f"yearly {self.keep_yearly}",
            f"within {self.keep_within_days:g}d",
            f"min validated {self.min_validated}",
        ]
        return ", ".join(parts)


# How many days one period of each age-bounded keep rule lasts, at the shortest and the longest
# (a month is 28 to 31 days, a year 365 or 366): the shortest bound is the earliest age at which a
# backup kept only by that rule may go, the longest the latest.
PERIOD_DAYS: dict[str, tuple[float, float]] = {
    "keep_daily": (1.0, 1.0),
    "keep_weekly": (7.0, 7.0),
    "keep_monthly": (28.0, 31.0),
    "keep_yearly": (365.0, 366.0),
}


def keep_rule_spans(policy: Any, bound: Literal["shortest", "longest"]) -> list[tuple[str, float]]:
    """(rule, days) for each keep rule of `policy` that bounds a backup's age (keep_within_days and
    the daily / weekly / monthly / yearly counts; rules set to 0 are left out).

    Args:
        policy: a RetentionPolicy, or the settings' RetentionSettings (the same fields).
        bound: "shortest" counts every period at its shortest length, "longest" at its longest.
    """
    index = 0 if bound == "shortest" else 1
    spans = [("keep_within_days", float(policy.keep_within_days))] + [
        (rule, days[index] * getattr(policy, rule)) for rule, days in PERIOD_DAYS.items()
    ]
    return [(rule, days) for rule, days in spans if days > 0]


@dataclass
class RetentionPlan:
    """Decisions for one (component, source): keep and remove partition the backups given.

    `keepers`: per kept backup, the period rules ("daily", "weekly", ...) whose period it keeps."""

    keep: list[tuple[str, list[str]]] = field(default_factory=list)
    remove: list[tuple[str, str]] = field(default_factory=list)
    refs: dict[str, BackupRef] = field(default_factory=dict)
    keepers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def keep_ids(self) -> list[str]:
        return [backup_id for backup_id, _ in self.keep]

    @property
    def remove_ids(self) -> list[str]:
        return [backup_id for backup_id, _ in self.remove]

    def rows(self) -> list[dict[str, Any]]:
        """One row per backup, newest first: backup id, started, validated, decision, reason."""
        decided = [(b, "keep", "; ".join(r)) for b, r in self.keep] + [
            (b, "remove", r) for b, r in self.remove
        ]
        rows = []
        for backup_id, decision, reason in decided:
            ref = self.refs.get(backup_id)
            rows.append(
                {
                    "component": ref.component if ref else "",
                    "source": ref.source if ref else "",
                    "backup_id": backup_id,
                    "started": ref.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if ref else "",
                    "status": ref.status if ref else "",
                    "decision": decision,
                    "reason": reason,
                }
            )
        return sorted(rows, key=lambda r: (r["started"], r["backup_id"]), reverse=True)


def _newest_first(backups: Iterable[BackupRef]) -> list[BackupRef]:
    return sorted(backups, key=lambda b: (b.started_at, b.backup_id), reverse=True)


_BUCKETS: list[tuple[str, Callable[[datetime], str]]] = [
    ("daily", lambda t: f"{t:%Y-%m-%d}"),
    ("weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("monthly", lambda t: f"{t:%Y-%m}"),
    ("yearly", lambda t: f"{t:%Y}"),
]


def apply_policy(
    backups: Sequence[BackupRef], policy: RetentionPolicy, now: datetime, parts: Sequence[str] = ()
) -> RetentionPlan:
    """Decide, for the backups of one (component, source), which to keep and which to remove.

    Args:
        backups: the backups of one group, in any order (ids must be unique).
        policy: the retention policy of that group.
        now: the moment the plan is made (for keep_within_days).
        parts: the component's parts (empty: one part, the whole source); the rules keep each
            part's backups on their own, and a reason names its part when there are several.

    Returns:
        A RetentionPlan: keep (newest first, each with its reasons) and remove (each with one reason).

    Raises:
        InvalidInput: when a backup id appears twice.
    """
    ordered = _newest_first(backups)
    refs = {b.backup_id: b for b in ordered}
    if len(refs) != len(ordered):
        raise InvalidInput("retention: the same backup id appears twice in one group")
    reasons: dict[str, list[str]] = {b.backup_id: [] for b in ordered}
    for b in ordered:
        if not b.finished:
            reasons[b.backup_id].append("in progress / not finished")
    keepers: dict[str, list[str]] = {}
    newest_validated: dict[str, BackupRef] = {}
    chains = series(ordered, parts)
    said: dict[str, dict[tuple[str, ...], list[str]]] = {}  # backup id -> reasons -> series giving them
    for label, members in chains.items():
        for backup_id, found in _keep_rules(members, policy, now).items():
            said.setdefault(backup_id, {}).setdefault(tuple(r for r, _ in found), []).append(label)
            rules = keepers.setdefault(backup_id, [])
            rules += [rule for _, rule in found if rule and rule not in rules]
        validated = [b for b in members if b.finished and b.validated]
        if validated:
            newest_validated[label] = validated[0]
    for backup_id, by_reasons in said.items():
        reasons[backup_id] += _worded(by_reasons, len(chains))

    plan = RetentionPlan(refs=refs, keepers={b: rules for b, rules in keepers.items() if rules})
    for b in ordered:
        if reasons[b.backup_id]:
            plan.keep.append((b.backup_id, reasons[b.backup_id]))
        elif b.invalid:
            newer = [newest_validated.get(label) for label, members in chains.items() if b in members]
            if all(
                n is not None and (n.started_at, n.backup_id) > (b.started_at, b.backup_id) for n in newer
            ):
                ids = ", ".join(dict.fromkeys(n.backup_id for n in newer if n is not None))
                plan.remove.append((b.backup_id, f"{b.status}; newer validated backup {ids} exists"))
            else:
                plan.keep.append((b.backup_id, [f"{b.status}, kept until a newer validated backup exists"]))
        else:
            plan.remove.append((b.backup_id, f"matches no keep rule ({policy.describe()})"))
    return plan


def series(ordered: Sequence[BackupRef], parts: Sequence[str] = ()) -> dict[str, list[BackupRef]]:
    """The backups each restore point series is made of, by label, keeping `ordered`'s order: one
    series per part of the component (the backups holding it: `parts`, or the whole source), and one
    per scope that backups were narrowed to (`--prefix events/`: those backups and the whole-source
    ones, which hold that scope too), like restic's snapshots grouped by paths."""
    names = declared(parts)
    chains = {
        name if len(names) > 1 else "whole source": [b for b in ordered if holds(b, name) and b.scope is None]
        for name in names
    }
    for scope in dict.fromkeys(b.scope for b in ordered if b.scope is not None):
        chains[f"backups of {', '.join(scope)}"] = [b for b in ordered if b.scope in (None, scope)]
    return chains


def _worded(by_reasons: dict[tuple[str, ...], list[str]], series_count: int) -> list[str]:
    """A kept backup's reasons, from reasons -> the series giving them: as they are when every series
    gives the same, else which series keeps it and why ("dags, config: daily 2026-12-04; metadata: last 3")."""
    (why, labels), *others = by_reasons.items()
    if not others and len(labels) == series_count:
        return list(why)
    return [f"{', '.join(labels)}: {', '.join(why)}" for why, labels in by_reasons.items()]


def _keep_rules(
    ordered: Sequence[BackupRef], policy: RetentionPolicy, now: datetime
) -> dict[str, list[tuple[str, str]]]:
    """backup id -> (reason, period rule or "") of every keep rule that keeps it, for backups
    `ordered` newest first (those of one part): the validated floor, last N, the period buckets,
    keep_within_days."""
    found: dict[str, list[tuple[str, str]]] = {}

    def keep(b: BackupRef, reason: str, rule: str = "") -> None:
        found.setdefault(b.backup_id, []).append((reason, rule))

    validated = [b for b in ordered if b.finished and b.validated]
    for b in validated[: policy.min_validated]:
        keep(b, "newest validated")
    candidates = [b for b in ordered if b.finished and not b.invalid]
    if policy.empty:
        for b in candidates:
            keep(b, "policy has no keep rule: keeping everything")
    for b in candidates[: policy.keep_last]:
        keep(b, f"last {policy.keep_last}")
    counts = {
        "daily": policy.keep_daily,
        "weekly": policy.keep_weekly,
        "monthly": policy.keep_monthly,
        "yearly": policy.keep_yearly,
    }
    last_seen: dict[str, str] = {}
    for b in candidates:
        moment = b.started_at.astimezone(UTC)
        for rule, bucket_of in _BUCKETS:
            bucket = bucket_of(moment)
            if counts[rule] > 0 and last_seen.get(rule) != bucket:
                keep(b, f"{rule} {bucket}", rule)
                counts[rule] -= 1
                last_seen[rule] = bucket
        if policy.keep_within_days > 0 and now - b.started_at < timedelta(days=policy.keep_within_days):
            keep(b, f"within {policy.keep_within_days:g}d")
    return found


def plan_groups(
    manifests: Iterable[BackupManifest],
    policy_for: Callable[[str, str], RetentionPolicy],
    now: datetime,
    parts_for: Callable[[str], Sequence[str]] = lambda component: (),
) -> dict[tuple[str, str], RetentionPlan]:
    """Apply each (component, source) group's policy to its manifests (`parts_for`: a component's parts)."""
    groups: dict[tuple[str, str], list[BackupRef]] = {}
    for manifest in manifests:
        groups.setdefault((manifest.component, manifest.source), []).append(ref_of(manifest))
    return {
        key: apply_policy(refs, policy_for(*key), now, parts_for(key[0]))
        for key, refs in sorted(groups.items())
    }


# -- mark and sweep (which stored objects no remaining manifest needs) ---------------------------


def backup_folder_of(key: str, component: str, source: str) -> tuple[str, str] | None:
    """(folder, backup_id) when `key` lies in a per-backup folder of this source, else None."""
    base = f"{component}/{source}/"
    if not key.startswith(base):
        return None
    parts = key[len(base) :].split("/")
    if len(parts) < 5 or not BACKUP_ID.match(parts[3]):
        return None
    return base + "/".join(parts[:4]) + "/", parts[3]


def orphaned_keys(
    listed: Iterable[str],
    component: str,
    source: str,
    remaining: Sequence[BackupManifest],
    running: Iterable[str] = (),
    just_removed: Iterable[str] = (),
    cutoff: datetime | None = None,
    referenced: Container[str] | None = None,
) -> list[str]:
    """Keys under `<component>/<source>/` that no remaining backup needs (the sweep's mark phase).

    `referenced`: the stored keys of the remaining manifests (default: from their entries; give a
    disk-backed set when they are too many to hold).

    A key is kept when it is not in a per-backup folder (not ours), lies in the folder of a remaining
    manifest or of a manifest that could not be read (a manifest key still listed), is a stored_key of
    a remaining manifest, or belongs to a backup in progress. Otherwise it is an orphan when its
    folder was just removed by this prune, or its backup started before `cutoff` (the grace period
    protects backups still being written, whose manifest does not exist yet).
    """
    keys = list(listed)
    kept_folders = {m.folder for m in remaining}
    if referenced is None:
        referenced = {e.stored_key for m in remaining for e in m.entries}
    for key in keys:  # a manifest listed but not among the readable ones: damaged, keep its folder
        place = backup_folder_of(key, component, source)
        if place and key == place[0] + MANIFEST_NAME:
            kept_folders.add(place[0])
    running_ids, removed = set(running), set(just_removed)
    orphans = []
    for key in keys:
        place = backup_folder_of(key, component, source)
        if place is None or place[0] in kept_folders or key in referenced or place[1] in running_ids:
            continue
        if place[0] in removed or (cutoff is not None and backup_time(place[1]) < cutoff):
            orphans.append(key)
    return orphans


def unreferenced_pool(
    listed_pool: Iterable[str], remaining: Sequence[BackupManifest], referenced: Container[str] | None = None
) -> list[str]:
    """Pool keys that no remaining manifest lists as a stored_key (`referenced`, as above)."""
    if referenced is None:
        referenced = {e.stored_key for m in remaining for e in m.entries}
    return [key for key in listed_pool if key not in referenced]
