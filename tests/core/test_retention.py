"""The retention policy: invariants (hypothesis) and worked examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backstop.core.errors import InvalidInput
from backstop.core.manifest import BackupManifest, ManifestEntry, backup_time
from backstop.core.retention import (
    BackupRef,
    RetentionPolicy,
    apply_policy,
    orphaned_keys,
    plan_groups,
    ref_of,
    unreferenced_pool,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def ref(hours_ago: float, status: str = "validated", n: int = 0) -> BackupRef:
    started = NOW - timedelta(hours=hours_ago)
    return BackupRef(
        backup_id=f"{started:%Y%m%dT%H%M%S}Z-{n:06x}",
        started_at=started,
        validated=status == "validated",
        status=status,
    )


backups_st = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=24 * 800, allow_nan=False),
        st.sampled_from(["validated", "validated", "complete", "invalid", "in_progress"]),
    ),
    max_size=40,
).map(lambda items: [ref(h, s, i) for i, (h, s) in enumerate(items)])

policy_st = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 5),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 14),
    keep_yearly=st.integers(0, 3),
    keep_within_days=st.sampled_from([0, 0, 1.5, 7, 30]),
    min_validated=st.integers(1, 3),
)


def newest(refs: list[BackupRef]) -> list[BackupRef]:
    return sorted(refs, key=lambda b: (b.started_at, b.backup_id), reverse=True)


@settings(max_examples=300, deadline=None)
@given(backups_st, policy_st)
def test_keep_and_remove_partition_the_input_and_every_decision_has_a_reason(backups, policy) -> None:
    plan = apply_policy(backups, policy, NOW)
    kept, removed = set(plan.keep_ids), set(plan.remove_ids)
    assert kept.isdisjoint(removed)
    assert kept | removed == {b.backup_id for b in backups}
    assert len(plan.keep) + len(plan.remove) == len(backups)
    assert all(reasons and all(reasons) for _, reasons in plan.keep)
    assert all(reason for _, reason in plan.remove)


@settings(max_examples=300, deadline=None)
@given(backups_st, policy_st)
def test_never_removes_the_newest_validated_backups(backups, policy) -> None:
    plan = apply_policy(backups, policy, NOW)
    floor = [b for b in newest(backups) if b.validated and b.finished][: policy.min_validated]
    assert {b.backup_id for b in floor} <= set(plan.keep_ids)


@settings(max_examples=300, deadline=None)
@given(backups_st, policy_st)
def test_applying_the_policy_to_what_it_kept_removes_nothing_more(backups, policy) -> None:
    plan = apply_policy(backups, policy, NOW)
    kept = [b for b in backups if b.backup_id in set(plan.keep_ids)]
    again = apply_policy(kept, policy, NOW)
    assert again.remove == []
    assert set(again.keep_ids) == set(plan.keep_ids)


@settings(max_examples=200, deadline=None)
@given(backups_st, st.integers(1, 6))
def test_keep_last_keeps_the_n_newest_good_backups(backups, n) -> None:
    plan = apply_policy(
        backups, RetentionPolicy(keep_last=n, keep_daily=0, keep_weekly=0, keep_monthly=0), NOW
    )
    good = [b for b in newest(backups) if b.finished and not b.invalid][:n]
    assert {b.backup_id for b in good} <= set(plan.keep_ids)


@settings(max_examples=200, deadline=None)
@given(backups_st, policy_st)
def test_unfinished_backups_are_kept_and_invalid_ones_go_only_after_a_newer_validated_one(
    backups, policy
) -> None:
    plan = apply_policy(backups, policy, NOW)
    removed = dict(plan.remove)
    validated = [b for b in backups if b.validated and b.finished]
    for b in backups:
        if not b.finished:
            assert b.backup_id not in removed
        if b.invalid and b.backup_id in removed:
            assert any((v.started_at, v.backup_id) > (b.started_at, b.backup_id) for v in validated)


def test_daily_weekly_monthly_example() -> None:
    # one validated backup a day for 60 days, newest first at 02:00 each day
    backups = [ref(24 * d + 10, "validated", d) for d in range(60)]
    policy = RetentionPolicy(keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=2, min_validated=1)
    plan = apply_policy(backups, policy, NOW)
    kept = dict(plan.keep)
    assert plan.keep_ids[0] == backups[0].backup_id
    assert kept[backups[0].backup_id] == [
        "newest validated",
        "last 2",
        "daily 2026-11-24",
        "weekly 2026-W48",
        "monthly 2026-11",
    ]
    assert kept[backups[1].backup_id] == ["last 2", "daily 2026-11-23"]
    assert kept[backups[2].backup_id] == ["daily 2026-11-22", "weekly 2026-W47"]
    # monthly 2026-10: the newest backup of October (31 Oct, 24 days + a bit ago)
    october = next(b for b in backups if b.started_at.month == 10)
    assert "monthly 2026-10" in kept[october.backup_id]
    assert len(plan.keep) == 4
    assert len(plan.remove) == 56
    assert all(reason.startswith("matches no keep rule") for _, reason in plan.remove)


def test_floor_keeps_the_newest_validated_even_when_the_policy_keeps_only_newer_unvalidated_ones() -> None:
    backups = [ref(1, "complete", 1), ref(2, "complete", 2), ref(30, "validated", 3), ref(40, "validated", 4)]
    plan = apply_policy(
        backups, RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0), NOW
    )
    assert plan.keep_ids == [backups[0].backup_id, backups[1].backup_id, backups[2].backup_id]
    assert dict(plan.keep)[backups[2].backup_id] == ["newest validated"]
    assert plan.remove_ids == [backups[3].backup_id]


def test_invalid_backups_count_for_nothing_and_stay_until_something_good_is_newer() -> None:
    backups = [ref(1, "invalid", 1), ref(2, "invalid", 2), ref(3, "validated", 3), ref(4, "invalid", 4)]
    plan = apply_policy(
        backups, RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0), NOW
    )
    kept = dict(plan.keep)
    assert kept[backups[0].backup_id] == ["invalid, kept until a newer validated backup exists"]
    assert kept[backups[2].backup_id] == ["newest validated", "last 1"]
    assert (
        dict(plan.remove)[backups[3].backup_id]
        == f"invalid; newer validated backup {backups[2].backup_id} exists"
    )


def test_within_and_in_progress() -> None:
    backups = [ref(1, "in_progress", 1), ref(30, "complete", 2), ref(24 * 9, "validated", 3)]
    plan = apply_policy(
        backups,
        RetentionPolicy(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_within_days=2),
        NOW,
    )
    kept = dict(plan.keep)
    assert kept[backups[0].backup_id] == ["in progress / not finished"]
    assert kept[backups[1].backup_id] == ["within 2d"]
    assert kept[backups[2].backup_id] == ["newest validated"]


def test_an_empty_policy_keeps_everything() -> None:
    backups = [ref(h, "complete", h) for h in range(5)]
    plan = apply_policy(backups, RetentionPolicy(0, 0, 0, 0, 0, 0, 1), NOW)
    assert plan.remove == []


def test_bad_policy_and_duplicate_ids_are_refused() -> None:
    with pytest.raises(InvalidInput, match="min_validated"):
        RetentionPolicy(min_validated=0)
    with pytest.raises(InvalidInput, match="keep_last"):
        RetentionPolicy(keep_last=-1)
    with pytest.raises(InvalidInput, match="twice"):
        apply_policy([ref(1, n=1), ref(1, n=1)], RetentionPolicy(), NOW)


def test_plan_groups_splits_by_component_and_source_and_reads_settings() -> None:
    from blocks.settings import RetentionSettings

    def manifest(component: str, source: str, hours: int) -> BackupManifest:
        r = ref(hours, "validated", hours)
        return BackupManifest(
            backup_id=r.backup_id,
            component=component,
            source=source,
            started_at=r.started_at,
            finished_at=r.started_at,
            status="validated",
        )

    manifests = [manifest("gcs", "a", h) for h in (1, 2, 3)] + [manifest("bigquery", "d", h) for h in (1, 2)]
    policy = RetentionPolicy.from_settings(
        RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    )
    plans = plan_groups(manifests, lambda c, s: policy, NOW)
    assert sorted(plans) == [("bigquery", "d"), ("gcs", "a")]
    assert len(plans[("gcs", "a")].remove) == 2
    assert len(plans[("bigquery", "d")].remove) == 1
    assert ref_of(manifests[0]).component == "gcs"
    rows = plans[("gcs", "a")].rows()
    assert [r["decision"] for r in rows] == ["keep", "remove", "remove"]


# -- sources backed up in parts (Cloud Composer) -----------------------------------------------------

PARTS = ("dags", "config", "metadata")


def composer_schedule(days: int) -> list[BackupRef]:
    """The shipped Composer schedules for `days` days up to NOW: DAGs and config daily at 00:15,
    metadata hourly at :05."""
    refs = []
    for day in range(days):
        midnight = (NOW - timedelta(days=day)).replace(hour=0, minute=0)
        for minutes, parts in [(15, ("dags", "config"))] + [(60 * h + 5, ("metadata",)) for h in range(24)]:
            started = midnight + timedelta(minutes=minutes)
            if started <= NOW:
                refs.append(
                    BackupRef(
                        f"{started:%Y%m%dT%H%M%S}Z-{minutes:06x}", started, True, "validated", parts=parts
                    )
                )
    return refs


def test_each_part_keeps_its_own_backups_so_every_kept_day_restores_whole() -> None:
    backups = composer_schedule(40)
    plan = apply_policy(backups, RetentionPolicy(), NOW, PARTS)
    kept = [b for b in backups if b.backup_id in plan.keep_ids]
    dags = [b for b in kept if b.parts == ("dags", "config")]
    # daily 7 (today and the six days before), weekly 4 and monthly 12 add the older weeks' and months'
    assert len({b.started_at.date() for b in dags}) >= 7, [b.backup_id for b in dags]
    reasons = dict(plan.keep)
    newest_dags = max(dags, key=lambda b: b.started_at)
    assert reasons[newest_dags.backup_id][0].startswith("dags, config: newest validated, last 3, daily")
    # the end of each of the seven newest days restores every part from a kept backup
    for day in range(7):
        end = (NOW - timedelta(days=day)).replace(hour=23, minute=59)
        for part in PARTS:
            before = [b for b in backups if part in (b.parts or ()) and b.started_at <= end]
            newest = max(before, key=lambda b: b.started_at)
            assert newest.backup_id in plan.keep_ids, (part, day)
    # applied to the source as a whole, hourly metadata took every keep slot: no DAG backup stayed
    whole = apply_policy(backups, RetentionPolicy(), NOW)
    assert not [b for b in backups if b.backup_id in whole.keep_ids and b.parts == ("dags", "config")]


def test_an_invalid_backup_of_several_parts_goes_only_when_each_part_has_a_newer_validated_one() -> None:
    def at(hours: float, parts: tuple[str, ...] | None, status: str = "validated") -> BackupRef:
        started = NOW - timedelta(hours=hours)
        return BackupRef(
            f"{started:%Y%m%dT%H%M%S}Z-{int(hours):06x}", started, status == "validated", status, parts=parts
        )

    broken = at(10, None, "invalid")  # a full backup (every part) that failed validation
    newer_metadata = at(5, ("metadata",))
    policy = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    plan = apply_policy([broken, newer_metadata], policy, NOW, PARTS)
    assert broken.backup_id in plan.keep_ids  # no newer validated backup of dags or config yet
    newer_dags = at(4, ("dags", "config"))
    plan = apply_policy([broken, newer_metadata, newer_dags], policy, NOW, PARTS)
    assert dict(plan.remove)[broken.backup_id].startswith("invalid; newer validated backup")


parts_st = st.sampled_from([None, ("dags", "config"), ("metadata",), ("dags",), ("config", "metadata")])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=24 * 400, allow_nan=False),
            st.sampled_from(["validated", "validated", "complete", "invalid", "in_progress"]),
            parts_st,
        ),
        max_size=40,
    ),
    policy_st,
)
def test_with_parts_each_part_keeps_at_least_what_its_backups_alone_would(items, policy) -> None:
    backups = [
        BackupRef(r.backup_id, r.started_at, r.validated, r.status, parts=parts)
        for r, parts in ((ref(h, s, i), parts) for i, (h, s, parts) in enumerate(items))
    ]
    plan = apply_policy(backups, policy, NOW, PARTS)
    kept = set(plan.keep_ids)
    assert kept | set(plan.remove_ids) == {b.backup_id for b in backups} and kept.isdisjoint(plan.remove_ids)
    for part in PARTS:
        holding = [b for b in backups if b.parts is None or part in b.parts]
        alone = apply_policy(holding, policy, NOW)
        assert set(alone.keep_ids) <= kept, part
    again = apply_policy([b for b in backups if b.backup_id in kept], policy, NOW, PARTS)
    assert again.remove == []


def test_backups_of_part_of_the_source_are_kept_as_a_series_of_their_own() -> None:
    """Hourly backups of `--prefix events/` beside a daily backup of the whole bucket: keep_last 2
    keeps the two newest of each series, never hourly parts in place of the whole ones."""

    def at(hours: float, scope: tuple[str, ...] | None) -> BackupRef:
        started = NOW - timedelta(hours=hours)
        return BackupRef(
            f"{started:%Y%m%dT%H%M%S}Z-{int(hours * 10):06x}", started, True, "validated", scope=scope
        )

    wholes = [at(24 * d + 12, None) for d in range(3)]
    events = [at(h, ("events/",)) for h in range(1, 8)]
    policy = RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    plan = apply_policy([*wholes, *events], policy, NOW)
    assert set(plan.keep_ids) == {
        wholes[0].backup_id,
        wholes[1].backup_id,
        events[0].backup_id,
        events[1].backup_id,
    }
    reasons = dict(plan.keep)
    assert reasons[wholes[0].backup_id] == ["whole source: newest validated, last 2"]
    assert reasons[events[0].backup_id] == ["backups of events/: newest validated, last 2"]


# -- mark and sweep -------------------------------------------------------------------------------

catalog_st = st.lists(
    st.tuples(
        st.integers(0, 400),  # hours ago
        st.lists(st.integers(0, 12), max_size=5),  # pool generations referenced
        st.booleans(),  # still in the catalog after the manifest phase
        st.sampled_from(["committed", "running", "crashed"]),
    ),
    max_size=12,
)
STRAYS = ["gcs/s/README", "gcs/s/2026/notes.txt"]


def build_catalog(
    items: list[Any],
) -> tuple[list[str], list[BackupManifest], list[str], list[str], list[str]]:
    """Listed keys, remaining manifests, running ids, folders just removed, pool keys."""
    listed, remaining, running, removed = list(STRAYS), [], [], []
    for n, (hours, generations, stays, kind) in enumerate(items):
        r = ref(hours, "validated", n)
        m = BackupManifest(backup_id=r.backup_id, component="gcs", source="s", started_at=r.started_at)
        pooled = [ManifestEntry(name=f"g{g}", stored_key=f"pool/gcs/s/{g}/o", size=1) for g in generations]
        m = m.model_copy(
            update={"entries": [ManifestEntry(name="own", stored_key=m.folder + "own", size=1), *pooled]}
        )
        listed += [m.folder + "own", m.folder + "extra/part-0"]
        if kind == "committed" and stays:
            remaining.append(m)
            listed.append(m.path)
        elif kind == "committed":
            removed.append(m.folder)
        elif kind == "running":
            running.append(m.backup_id)
    return listed, remaining, running, removed, [f"pool/gcs/s/{g}/o" for g in range(13)]


@settings(max_examples=200, deadline=None)
@given(catalog_st, st.integers(0, 300))
def test_the_sweep_never_takes_what_a_remaining_or_running_backup_needs(items, grace_hours) -> None:
    listed, remaining, running, removed, pool = build_catalog(items)
    cutoff = NOW - timedelta(hours=grace_hours)
    orphans = set(orphaned_keys(listed, "gcs", "s", remaining, running, removed, cutoff))
    needed = {e.stored_key for m in remaining for e in m.entries}
    assert orphans <= set(listed)
    assert not orphans & needed
    assert not any(k.startswith(m.folder) for m in remaining for k in orphans)
    assert not any(f"/{backup_id}/" in k for backup_id in running for k in orphans)
    assert not orphans & set(STRAYS)
    # complete: everything of a backup this prune removed goes
    assert {k for k in listed for folder in removed if k.startswith(folder)} <= orphans
    # other orphans (crashed runs) go only once their start is older than the grace period
    for key in orphans:
        if not any(key.startswith(folder) for folder in removed):
            assert backup_time(key.split("/")[5]) < cutoff
    left = set(unreferenced_pool(pool, remaining))
    assert not left & needed
    assert left | needed >= set(pool)
