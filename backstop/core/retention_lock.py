"""Until when a backup must stay undeletable: the retention plan as per-object retain-until dates.
Pure: no Prefect, no I/O.

Every object a kept backup references gets a Cloud Storage object retention (Object Retention Lock)
until the date the retention policy keeps that backup to (`keep_until`), so neither prune nor a
stolen credential can delete it earlier. The date of one backup:

- keep_within_days: its start + that many days;
- a period rule (daily / weekly / monthly / yearly N) whose period it keeps: the start of that period
  + N periods (the day it leaves the N newest periods when a backup runs every period; with fewer
  backups the plan keeps it longer, which the lock allows). Such a date counts once its period has
  ended (no newer backup can take the period from it any more): that is when prune extends a backup's
  lock ("a daily becomes the monthly keeper"). Of the periods still open, the finest counts, so a
  backup just committed is locked at least as long as the daily rule keeps it (its day + keep_daily
  days); a newer backup of the same day may take its place, so at most the backups of one period
  stay locked longer than the plan keeps them;
- count rules (keep_last, min_validated) give no date: the bucket retention policy covers them.

A lock is only ever extended, never shortened (`later`); an object shared by several backups (the
Cloud Storage pool) carries the latest date any of them needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from backstop.core.errors import InvalidInput
from backstop.core.retention import BackupRef, RetentionPlan, RetentionPolicy

# The period rules, finest first, with the RetentionPolicy field that counts them.
PERIOD_RULES = (
    ("daily", "keep_daily"),
    ("weekly", "keep_weekly"),
    ("monthly", "keep_monthly"),
    ("yearly", "keep_yearly"),
)
MODES = {"unlocked": "Unlocked", "locked": "Locked"}


def period_start(rule: str, moment: datetime) -> datetime:
    """The start (UTC) of the day / ISO week / month / year `moment` falls in."""
    t = moment.astimezone(UTC)
    day = datetime(t.year, t.month, t.day, tzinfo=UTC)
    if rule == "daily":
        return day
    if rule == "weekly":
        return day - timedelta(days=t.weekday())
    if rule == "monthly":
        return day.replace(day=1)
    if rule == "yearly":
        return day.replace(month=1, day=1)
    raise InvalidInput(f"unknown period rule {rule!r}")


def add_periods(rule: str, start: datetime, count: int) -> datetime:
    """`start` (a period start) moved `count` periods of `rule` later."""
    if rule == "daily":
        return start + timedelta(days=count)
    if rule == "weekly":
        return start + timedelta(weeks=count)
    if rule == "monthly":
        years, month = divmod(start.month - 1 + count, 12)
        return start.replace(year=start.year + years, month=month + 1)
    if rule == "yearly":
        return start.replace(year=start.year + count)
    raise InvalidInput(f"unknown period rule {rule!r}")


def keep_until(
    started_at: datetime, keeper_of: list[str], policy: RetentionPolicy, now: datetime
) -> datetime | None:
    """The date `policy` keeps a backup started at `started_at` to (see the module docstring).

    Args:
        started_at: when the backup started.
        keeper_of: the period rules ("daily", ...) whose period the backup keeps in the plan.
        policy: the retention policy of its source.
        now: the moment of the decision (a period ended before it is settled).

    Returns:
        The date, or None when only count rules keep it.
    """
    dates = []
    if policy.keep_within_days > 0:
        dates.append(started_at + timedelta(days=policy.keep_within_days))
    open_dates: list[datetime] = []
    for rule, count_field in PERIOD_RULES:
        count = int(getattr(policy, count_field))
        if rule not in keeper_of or count <= 0:
            continue
        start = period_start(rule, started_at)
        end = add_periods(rule, start, count)
        (dates if add_periods(rule, start, 1) <= now else open_dates).append(end)
    if open_dates:
        dates.append(open_dates[0])  # the finest open period
    return max(dates) if dates else None


def newest_keeper_of(policy: RetentionPolicy) -> list[str]:
    """The period rules a just-committed backup keeps: it is the newest of each of its periods."""
    return [rule for rule, count_field in PERIOD_RULES if getattr(policy, count_field) > 0]


def plan_until(plan: RetentionPlan, policy: RetentionPolicy, now: datetime) -> dict[str, datetime]:
    """backup id -> keep date for every kept backup of `plan` that has one."""
    found = {}
    for backup_id in plan.keep_ids:
        ref: BackupRef | None = plan.refs.get(backup_id)
        if ref is None or not ref.finished:
            continue
        until = keep_until(ref.started_at, plan.keepers.get(backup_id, []), policy, now)
        if until is not None:
            found[backup_id] = until
    return found


def later(current: datetime | None, wanted: datetime) -> bool:
    """Whether `wanted` extends a lock that ends at `current` (a lock is never shortened)."""
    return current is None or wanted > current


@dataclass(frozen=True)
class RetentionLock:
    """How a backup store locks objects: the object retention mode and the retention policies.

    Built from the settings (`object_retention`, `retention`, `retention_overrides`) and carried by
    the store, so committing and pruning lock with the same plan."""

    mode: Literal["Unlocked", "Locked"]
    default: RetentionPolicy
    overrides: dict[str, RetentionPolicy] = field(default_factory=dict)
    step: timedelta = timedelta(0)  # a new backup's date rounded up to a multiple of it (see at_commit)

    @classmethod
    def from_settings(cls, settings: Any) -> RetentionLock | None:
        """The lock the settings ask for, or None when `object_retention` is "off"."""
        mode = MODES.get(str(getattr(settings, "object_retention", "off")))
        if mode is None:
            return None
        overrides = {k: RetentionPolicy.from_settings(v) for k, v in settings.retention_overrides.items()}
        step = timedelta(days=getattr(settings, "object_retention_step_days", 0))
        return cls(mode, RetentionPolicy.from_settings(settings.retention), overrides, step)  # type: ignore[arg-type]

    def policy_for(self, component: str, source: str) -> RetentionPolicy:
        """The policy of `component`/`source`, as `BackstopSettings.retention_for` picks it."""
        return self.overrides.get(f"{component}/{source}") or self.overrides.get(component) or self.default

    def at_commit(self, component: str, source: str, started_at: datetime, now: datetime) -> datetime | None:
        """The date a backup being committed (the newest of its source) is locked to: its keep date,
        rounded up to a multiple of `step` (counted from the Unix epoch).

        Rounding is what keeps an incremental backup's cost flat: the objects it shares with the
        backup before it (every unchanged object of a bucket) are already retained until that
        backup's date, and only need a longer lock when the rounded date moves on, once a step
        instead of at every backup. The price: a backup stays locked up to `step` past its keep date.
        """
        policy = self.policy_for(component, source)
        until = keep_until(started_at, newest_keeper_of(policy), policy, now)
        return until if until is None else round_up(until, self.step)


def round_up(moment: datetime, step: timedelta) -> datetime:
    """`moment` rounded up to a multiple of `step` since the Unix epoch (unchanged for a zero step)."""
    if step <= timedelta(0):
        return moment
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -((epoch - moment) // step)  # ceiling division
    return epoch + steps * step
