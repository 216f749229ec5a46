"""Restore points (backstop/core/restore_points.py): each part from its newest validated backup at or
before T. Pure, no platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backstop.core.catalog_index import ManifestHeader
from backstop.core.errors import NotFound
from backstop.core.manifest import new_backup_id
from backstop.core.restore_points import WHOLE, assemble, history, narrowed

pytestmark = pytest.mark.unit

T = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
COMPOSER = ("dags", "metadata", "config")


def header(hours_before_t: float, parts: list[str] | None, status: str = "validated") -> ManifestHeader:
    started = T - timedelta(hours=hours_before_t)
    return ManifestHeader(
        backup_id=new_backup_id(started),
        component="composer",
        source="analytics",
        started_at=started,
        status=status,  # type: ignore[arg-type]
        entry_count=1,
        total_bytes=1,
        parts=parts,
    )


def test_the_shipped_composer_schedule_takes_dags_from_the_daily_and_metadata_from_the_hourly() -> None:
    daily = header(10, ["dags", "config"])
    hourly = [header(h, ["metadata"]) for h in (3, 2, 1)]
    point = assemble("composer", "analytics", COMPOSER, [daily, *hourly])
    assert point.part_map() == {
        "dags": daily.backup_id,
        "metadata": hourly[-1].backup_id,
        "config": daily.backup_id,
    }
    assert point.backup_ids == [hourly[-1].backup_id, daily.backup_id]
    assert point.by_backup() == {hourly[-1].backup_id: ["metadata"], daily.backup_id: ["dags", "config"]}
    assert point.oldest == daily.started_at and point.time == hourly[-1].started_at


def test_at_t_only_backups_started_at_or_before_t_and_validated_count() -> None:
    old = header(30, None)  # a backup without a parts record holds every part
    failed_dags = header(5, ["dags", "config"], status="invalid")
    later = header(-1, ["dags", "config"])  # after T
    metadata = header(0, ["metadata"])  # exactly at T counts
    point = assemble("composer", "analytics", COMPOSER, [old, failed_dags, later, metadata], T)
    assert point.part_map() == {
        "dags": old.backup_id,
        "metadata": metadata.backup_id,
        "config": old.backup_id,
    }


def test_a_part_with_no_backup_before_t_is_missing_and_refused_by_name_unless_narrowed() -> None:
    point = assemble("composer", "analytics", COMPOSER, [header(1, ["metadata"])], T)
    assert point.missing == ["dags", "config"]
    with pytest.raises(NotFound, match=r"part dags, config at or before 2026-12-04T12:00:00\+00:00"):
        narrowed(point, None)
    assert narrowed(point, ["metadata"]) == ["metadata"]
    with pytest.raises(NotFound, match="part config"):
        narrowed(point, ["snapshot"], lambda o: "config" if o == "snapshot" else o)


def test_a_component_without_parts_has_one_implicit_part() -> None:
    backups = [header(h, None) for h in (5, 2)]
    point = assemble("gcs", "raw", (), backups, T)
    assert [p.part for p in point.parts] == [WHOLE]
    assert point.part_map() == {WHOLE: backups[1].backup_id}
    assert narrowed(point, ["events/a.csv"]) == [WHOLE]  # `only` narrows inside the one part
    assert assemble("gcs", "raw", (), [], T).missing == [WHOLE]


def test_history_lists_one_point_per_validated_backup_newest_first() -> None:
    daily = header(10, ["dags", "config"])
    hourly = [header(h, ["metadata"]) for h in (12, 1)]
    points = history(
        "composer", "analytics", COMPOSER, [daily, *hourly, header(0.5, ["metadata"], "invalid")]
    )
    assert [p.as_of for p in points] == [hourly[1].started_at, daily.started_at, hourly[0].started_at]
    assert points[0].part_map() == {
        "dags": daily.backup_id,
        "metadata": hourly[1].backup_id,
        "config": daily.backup_id,
    }
    assert points[2].missing == ["dags", "config"]
    assert "dags, config: none" in points[2].label()


def scoped(hours: float, scope: list[str] | None) -> ManifestHeader:
    return header(hours, None).model_copy(update={"component": "gcs", "scope": scope})


def test_a_newer_backup_of_part_of_the_source_is_laid_over_the_whole_one() -> None:
    whole, events, older_events = scoped(5, None), scoped(1, ["events/"]), scoped(2, ["events/"])
    models = scoped(3, ["models/"])
    before_whole = scoped(6, ["logs/"])  # older than the whole backup: the whole one holds logs/ too
    point = assemble("gcs", "lake", (), [whole, events, older_events, models, before_whole])
    assert point.part_map() == {WHOLE: whole.backup_id}
    # the older events/ backup is covered by the newer one: not read
    assert [o.backup_id for o in point.overlays] == [events.backup_id, models.backup_id]
    assert point.backup_ids == [events.backup_id, models.backup_id, whole.backup_id]
    # newest first, each leaving to newer backups what they hold
    assert [(p.backup_id, left) for p, left in point.layers()] == [
        (events.backup_id, []),
        (models.backup_id, ["events/"]),
        (whole.backup_id, ["events/", "models/"]),
    ]
    assert (
        point.label() == f"all: {whole.backup_id}; models/: {models.backup_id}; events/: {events.backup_id}"
    )
    assert [o["scope"] for o in point.row()["overlays"]] == [["events/"], ["models/"]]
    # a restore that wants nothing of the models/ backup's share does not read it, and the older
    # backup restores models/ itself (nothing is left to a backup that is not read)
    no_models = point.layers(lambda layer, newer: layer.scope != ["models/"])
    assert [(p.backup_id, left) for p, left in no_models] == [
        (events.backup_id, []),
        (whole.backup_id, ["events/"]),
    ]
    # each backup of part of the source after the whole one is a point of its own; the covered one too
    # (at its time it was the newest of events/)
    listed = history("gcs", "lake", (), [whole, events, older_events, models, before_whole])
    assert [len(p.backup_ids) for p in listed] == [3, 3, 2, 1, 1]


def test_a_backup_of_part_of_the_source_is_the_base_only_where_none_of_the_whole_exists() -> None:
    events, models = scoped(1, ["events/"]), scoped(2, ["models/"])
    only_part = assemble("gcs", "lake", (), [events])  # all there is: said in the plan and the listing
    assert only_part.backup_ids == [events.backup_id] and only_part.parts[0].label() == "all (events/ only)"
    assert only_part.row()["parts"]["all"]["scope"] == ["events/"]
    both = assemble("gcs", "lake", (), [events, models])
    assert both.part_map() == {WHOLE: events.backup_id}
    assert [(p.backup_id, left) for p, left in both.layers()] == [
        (events.backup_id, []),
        (models.backup_id, ["events/"]),
    ]


def test_a_prefix_within_a_newer_backups_prefix_is_covered_and_a_wider_one_is_not() -> None:
    from backstop.core.restore_points import covered

    assert covered(["events/2026/"], ["events/"]) and covered(["events"], ["events"])
    assert not covered(["events/"], ["events/2026/"]) and not covered(["ev"], ["events/"])
    assert not covered(["a", "b"], ["a"])


def test_a_scope_is_recorded_in_one_form_and_an_empty_prefix_is_the_whole_source() -> None:
    from backstop.core.catalog_index import scope_of
    from backstop.core.manifest import BackupManifest

    def scope(state: dict[str, object], options: dict[str, object] | None = None) -> list[str] | None:
        manifest = BackupManifest(
            backup_id=new_backup_id(T), component="gcs", source="lake", started_at=T, source_state=state
        )
        return scope_of(manifest.model_copy(update={"options": options or {}}))

    assert scope({"scope": ["b/", "a/", "a/"]}) == ["a/", "b/"]
    assert scope({}, {"prefixes": ["events/"]}) == ["events/"]  # recorded before scopes were
    assert scope({}, {"prefixes": ["", "events/"]}) is None and scope({}, {"prefixes": []}) is None
