"""Per-object retain-until dates from the retention plan (backstop/core/retention_lock.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backstop.core.retention import BackupRef, RetentionPolicy, apply_policy, keep_rule_spans
from backstop.core.retention_lock import RetentionLock, keep_until, later, plan_until, round_up

pytestmark = pytest.mark.unit

GFS = RetentionPolicy(keep_last=1, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=0)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_committed_backup_is_locked_as_long_as_the_daily_rule_keeps_it() -> None:
    lock = RetentionLock("Unlocked", GFS)
    started = at("2026-12-04T10:00:00")
    assert lock.at_commit("gcs", "raw", started, started) == at("2026-12-11T00:00:00")
    within = RetentionLock(
        "Locked",
        RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_within_days=3),
    )
    assert within.at_commit("gcs", "raw", started, started) == started + timedelta(days=3)
    count_only = RetentionLock(
        "Unlocked", RetentionPolicy(keep_last=5, keep_daily=0, keep_weekly=0, keep_monthly=0)
    )
    assert count_only.at_commit("gcs", "raw", started, started) is None


def test_the_last_daily_of_a_month_is_promoted_to_the_monthly_date_once_the_month_ends() -> None:
    refs = [BackupRef(f"b{day}", at(f"2026-11-{day:02d}T02:00:00"), validated=True) for day in (28, 29, 30)]
    refs.append(BackupRef("dec1", at("2026-12-01T02:00:00"), validated=True))
    # on 30 November the month is open: the newest is locked to its daily date only
    before = plan_until(
        apply_policy(refs[:3], GFS, at("2026-11-30T12:00:00")), GFS, at("2026-11-30T12:00:00")
    )
    assert before["b30"] == at("2026-12-07T00:00:00")
    # on 1 December November has ended with b30 as its keeper: locked to November + 12 months
    now = at("2026-12-01T12:00:00")
    dates = plan_until(apply_policy(refs, GFS, now), GFS, now)
    assert dates["b30"] == at("2027-11-01T00:00:00")
    assert dates["b28"] == at("2026-12-05T00:00:00")  # a settled day: its day + 7 days
    # the week of 23-29 November (ISO week 48) ended with b29 as its keeper: 4 weeks from its Monday
    assert dates["b29"] == at("2026-12-21T00:00:00")
    assert dates["dec1"] == at("2026-12-08T00:00:00")
    assert later(None, now) and later(now, now + timedelta(seconds=1)) and not later(now, now)


def test_overrides_pick_the_policy_like_the_settings() -> None:
    tight = RetentionPolicy(keep_last=1, keep_daily=2, keep_weekly=0, keep_monthly=0)
    lock = RetentionLock("Unlocked", GFS, {"gcs/raw": tight})
    started = at("2026-12-04T10:00:00")
    assert keep_until(started, ["daily"], lock.policy_for("gcs", "raw"), started) == at("2026-12-06T00:00:00")
    assert lock.policy_for("gcs", "other") is GFS


def test_keep_rule_spans_name_their_bound() -> None:
    policy = RetentionPolicy(keep_last=1, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2)
    assert dict(keep_rule_spans(policy, "shortest")) == {
        "keep_daily": 7, "keep_weekly": 28, "keep_monthly": 336, "keep_yearly": 730,
    }  # fmt: skip
    assert dict(keep_rule_spans(policy, "longest"))["keep_monthly"] == 372
    assert dict(keep_rule_spans(policy, "longest"))["keep_yearly"] == 732


def test_a_step_rounds_the_commit_date_up_so_a_week_of_daily_backups_shares_one_date() -> None:
    lock = RetentionLock("Unlocked", GFS, step=timedelta(days=7))
    # 7-day steps from the Unix epoch (a Thursday): 2026-12-10, 2026-12-17, ...
    dates = {
        lock.at_commit("gcs", "raw", s, s) for s in (at(f"2026-12-{d:02d}T10:00:00") for d in range(3, 10))
    }
    assert dates == {at("2026-12-10T00:00:00"), at("2026-12-17T00:00:00")}
    # each date is at least the keep date, at most a step past it
    for day in range(1, 29):
        started = at(f"2026-11-{day:02d}T23:59:00")
        exact = RetentionLock("Unlocked", GFS).at_commit("gcs", "raw", started, started)
        rounded = lock.at_commit("gcs", "raw", started, started)
        assert exact is not None and rounded is not None
        assert exact <= rounded < exact + timedelta(days=7)
    assert round_up(at("2026-12-17T00:00:00"), timedelta(days=7)) == at("2026-12-17T00:00:00")
    assert round_up(at("2026-12-17T00:00:01"), timedelta(0)) == at("2026-12-17T00:00:01")
