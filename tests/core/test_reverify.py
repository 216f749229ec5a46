"""Re-verification's window over the stored objects, and retention horizons (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.retention import BackupRef, RetentionPolicy, apply_policy
from backstop.core.reverify import (
    VerificationReport,
    check_share,
    in_window,
    position,
    share_for,
    window_start,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_every_object_is_read_once_within_the_period_of_rotating_windows() -> None:
    keys = [f"pool/gcs/obj-{i}" for i in range(2000)]
    share = share_for(period_days=28, every_days=7)
    assert share == 0.25
    reports: list[VerificationReport] = []
    read: dict[str, int] = {}
    for run in range(4):
        start = window_start(reports, "gcs")
        for key in keys:
            if in_window(position(key), start, share):
                read[key] = read.get(key, 0) + 1
        at = NOW + timedelta(days=7 * run)
        reports.append(VerificationReport(run_id=f"r{run}", at=at, share=share, starts={"gcs": start}))
    assert sorted(read) == sorted(keys) and set(read.values()) == {1}
    assert 400 < sum(in_window(position(k), 0.9, share) for k in keys) < 600  # wraps past 1


def test_share_is_checked() -> None:
    assert check_share(100) == 1.0 and check_share(25) == 0.25
    for bad in (0, -5, 101):
        with pytest.raises(InvalidInput, match="share"):
            check_share(bad)


def test_kept_for_days_is_the_longest_time_rule() -> None:
    assert RetentionPolicy().kept_for_days() == 12 * 31 + 1  # keep_monthly 12 by default
    assert RetentionPolicy(keep_monthly=0, keep_weekly=4).kept_for_days() == 29
    assert (
        RetentionPolicy(keep_monthly=0, keep_weekly=0, keep_daily=0, keep_within_days=10.5).kept_for_days()
        == 12
    )
    assert RetentionPolicy(keep_last=5, keep_daily=0, keep_weekly=0, keep_monthly=0).kept_for_days() == 0


def test_an_expired_backup_counts_for_nothing_and_goes_once_a_newer_one_is_validated() -> None:
    refs = [
        BackupRef("20260301T000000Z-aaaaaa", NOW - timedelta(days=9), False, "expired"),
        BackupRef("20260309T000000Z-bbbbbb", NOW - timedelta(days=1), True, "validated"),
    ]
    plan = apply_policy(refs, RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0), NOW)
    assert [b for b, _ in plan.remove] == ["20260301T000000Z-aaaaaa"]
    assert "expired" in plan.remove[0][1]
