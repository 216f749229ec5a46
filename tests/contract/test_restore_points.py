"""Restore points over every component that has parts (tests/contract/conftest.py's subjects).

A source backed up part by part on separate schedules (Composer: DAGs and config daily, metadata
hourly) is restored, recovered and drilled as a whole: every part from its own newest backup,
under one plan and one approval; a part with no backup is named and refused; a drill that
restores nothing of a part fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from backstop.core.errors import Conflict, NotFound
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine import drill, lifecycle, restore
from tasks.engine.protocol import RestoreRequest, get_component
from tasks.operations.recover import recover

pytestmark = pytest.mark.integration


def split_backups(
    subject: Any, settings: Any, store: Any, validate_after: bool = True
) -> tuple[str, Any, list[Any]]:
    """(source, its state, the backups): one backup per group of parts, as the schedules take them."""
    if not get_component(subject.component).parts:
        pytest.skip(
            f"{subject.component} has no parts: its restore point is its newest backup (test_contract)"
        )
    source = subject.seed()
    before = subject.state(source)
    backups = []
    for parts in subject.split_parts:
        manifest = lifecycle.backup(
            subject.component, settings, source, subject.part_options(parts), validate_after, store=store
        )
        assert manifest.status == ("validated" if validate_after else "complete"), manifest.validation
        backups.append(manifest)
    return source, before, backups


def expected_parts(subject: Any, backups: list[Any]) -> dict[str, str]:
    return {
        part: b.backup_id for parts, b in zip(subject.split_parts, backups, strict=True) for part in parts
    }


def test_a_restore_point_of_split_part_backups_restores_every_part_under_one_approval(
    subject: Any, settings: Any, store: Any
) -> None:
    source, before, backups = split_backups(subject, settings, store)
    subject.change(source)
    changed = subject.state(source)

    with pytest.raises(Conflict, match="not approved"):  # one approval covers every part: none given
        restore.restore(
            subject.component, settings, RestoreRequest(source=source, overwrite=True), store=store
        )
    assert subject.state(source) == changed

    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, overwrite=True), yes=True, store=store
    )
    assert subject.state(source) == before  # every part back, not only the newest backup's
    assert {p: c["backup_id"] for p, c in report.parts.items()} == expected_parts(subject, backups)
    runs = catalog.list_runs(store, subject.component, source)
    recorded = next(r for r in runs if r.kind == "restore" and r.outcome == "succeeded")
    assert {p: c["backup_id"] for p, c in recorded.details["parts"].items()} == expected_parts(
        subject, backups
    )

    target = subject.new_target(source)
    restore.restore(subject.component, settings, RestoreRequest(source=source, target=target), store=store)
    assert subject.state(target) == before

    first = backups[0]  # --before the later backups: their parts have no backup at that time
    later = sorted({p for parts in subject.split_parts[1:] for p in parts})
    with pytest.raises(NotFound, match=f"part {', '.join(later)} at or before"):
        restore.restore(
            subject.component,
            settings,
            RestoreRequest(source=source, before=first.started_at.isoformat(), dry_run=True),
            store=store,
        )


def test_recover_as_of_t_brings_back_every_part_of_a_split_source(
    subject: Any, settings: Any, store: Any
) -> None:
    source, before, backups = split_backups(subject, settings, store)
    as_of = datetime.now(UTC)
    subject.change(source)

    operation = recover(settings, as_of, [subject.component], [source], yes=True, store=store)
    assert operation.outcome == "succeeded", operation.message
    (step,) = operation.steps
    assert step.parts == expected_parts(subject, backups)
    assert subject.state(source) == before


def test_the_drill_restores_every_part_of_the_restore_point_and_removes_its_target(
    subject: Any, settings: Any, store: Any
) -> None:
    source, _, backups = split_backups(subject, settings, store)
    result = drill.drill(subject.component, settings, source, store=store)
    assert result.passed, result.problems
    assert {p: c["backup_id"] for p, c in result.parts.items()} == expected_parts(subject, backups)
    assert all(c["restored"] > 0 for c in result.parts.values() if c["entries"]), result.parts
    assert result.target is not None and subject.gone(result.target) and result.cleaned_up


def test_a_drill_that_restores_nothing_of_a_part_fails(subject: Any, settings: Any, store: Any) -> None:
    source, _, backups = split_backups(subject, settings, store)
    component = get_component(subject.component)
    scratch = component.scratch_target(index.find(store, backups[-1].backup_id), "prefilled")
    subject.copy_files(source, scratch)  # the scratch target already holds the files: nothing is written

    result = drill.drill(subject.component, settings, source, suffix="prefilled", store=store)
    assert not result.passed
    first = subject.split_parts[0][0]
    assert any(p.startswith(f"part {first} of backup") and "restored none" in p for p in result.problems)
    assert subject.gone(scratch)


def test_a_part_with_no_backup_before_t_is_named_and_refused_unless_narrowed_to_what_exists(
    subject: Any, settings: Any, store: Any
) -> None:
    if not get_component(subject.component).parts:
        pytest.skip(f"{subject.component} has no parts")
    source = subject.seed()
    newest = subject.split_parts[-1]
    lifecycle.backup(subject.component, settings, source, subject.part_options(newest), store=store)
    subject.change(source)
    changed = subject.state(source)
    missing = subject.split_parts[0][0]

    with pytest.raises(NotFound, match=f"part {missing}.*nothing restored"):
        restore.restore(
            subject.component, settings, RestoreRequest(source=source, overwrite=True), yes=True, store=store
        )
    assert subject.state(source) == changed
    with pytest.raises(NotFound, match=f"part {missing}"):
        recover(settings, datetime.now(UTC), [subject.component], [source], yes=True, store=store)
    assert subject.state(source) == changed

    report = restore.restore(
        subject.component,
        settings,
        RestoreRequest(source=source, only=newest, overwrite=True, dry_run=True),
        store=store,
    )
    assert sorted(report.parts) == sorted(newest)


def test_the_triggered_validation_takes_the_backup_of_every_part_written_since(
    subject: Any, settings: Any, store: Any
) -> None:
    """Each part's backup written and not validated yet is validated, not only the newest part's:
    the restore point is then made of all of them."""
    source, before, backups = split_backups(subject, settings, store, validate_after=False)
    taken = catalog.backups_to_validate(store, subject.component, [source])
    assert {m.backup_id for m in taken} == {b.backup_id for b in backups}
    for manifest in taken:
        assert lifecycle.validate(subject.component, settings, manifest, store=store).status == "validated"
    target = subject.new_target(source)
    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, target=target), store=store
    )
    assert {p: c["backup_id"] for p, c in report.parts.items()} == expected_parts(subject, backups)
    assert subject.state(target) == before


def test_prune_keeping_one_backup_keeps_each_part_s_newest_so_the_restore_point_stays_whole(
    subject: Any, settings: Any, store: Any
) -> None:
    from backstop.core.manifest import utcnow
    from backstop.core.retention import RetentionPolicy
    from tasks.operations.prune import prune

    source, before, backups = split_backups(subject, settings, store)
    last = subject.split_parts[-1]  # backed up again: the newest run holds only these parts
    again = lifecycle.backup(
        subject.component, settings, source, subject.part_options(last), True, store=store
    )
    keep_one = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    report = prune(store, subject.component, source, keep_one, utcnow(), grace_hours=0)
    assert report.removed == [backups[-1].backup_id], report.plan.rows()
    assert {m.backup_id for m in index.list_manifests(store, subject.component, source)} == {
        *(b.backup_id for b in backups[:-1]),
        again.backup_id,
    }

    subject.change(source)
    restore.restore(
        subject.component, settings, RestoreRequest(source=source, overwrite=True), yes=True, store=store
    )
    assert subject.state(source) == before


def test_a_newer_backup_of_part_of_the_source_is_laid_over_the_whole_one(
    subject: Any, settings: Any, store: Any
) -> None:
    """A backup narrowed to part of the source (Cloud Storage `--prefix`, BigQuery `--table`) taken
    after one of the whole: a restore of the whole reads the part from the newer backup and the rest
    from the whole one (neither alone is the source as it was), a restore of what lies in the part
    reads the newer part, the drill restores and checks both, and prune keeping one backup keeps one
    of each."""
    from backstop.core.manifest import utcnow
    from backstop.core.retention import RetentionPolicy
    from tasks.catalog import points
    from tasks.engine import drill
    from tasks.operations.prune import prune

    if not subject.subset_options:
        pytest.skip(f"{subject.component}: its subject takes no backup of part of a source")
    source = subject.seed()
    at_whole = subject.state(source)
    whole = lifecycle.backup(subject.component, settings, source, store=store)
    subject.change_in_subset(source)  # only the newer backup, of the part, holds this
    part = lifecycle.backup(subject.component, settings, source, subject.subset_options, store=store)
    subject.change_outside_subset(source)  # and this no backup holds
    assert whole.status == part.status == "validated"
    expected = subject.laid_over(at_whole, subject.state(source))
    assert expected not in (at_whole, subject.state(source))  # neither backup alone restores it

    point = points.restore_point(store, subject.component, source, get_component(subject.component).parts)
    assert point.backup_ids == [part.backup_id, whole.backup_id]
    target = subject.new_target(source)
    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, target=target), store=store
    )
    assert report.backup_id == f"{part.backup_id}, {whole.backup_id}"
    assert subject.state(target) == expected

    asked = RestoreRequest(source=source, target=subject.new_target(source), only=subject.within_subset)
    assert restore.restore(subject.component, settings, asked, store=store).backup_id == part.backup_id
    if subject.spanning_subset:  # names in both backups' shares: each read from its own backup
        asked = RestoreRequest(source=source, target=subject.new_target(source), only=subject.spanning_subset)
        spanning = restore.restore(subject.component, settings, asked, store=store)
        assert spanning.backup_id == f"{part.backup_id}, {whole.backup_id}"
        assert subject.state(asked.target) == expected

    drilled = drill.drill(subject.component, settings, source, store=store, record=False)
    assert drilled.passed, drilled.problems
    assert {counts["backup_id"] for counts in drilled.parts.values()} == {whole.backup_id, part.backup_id}
    assert all(counts["restored"] for counts in drilled.parts.values()), drilled.parts
    # a drill whose scratch target already holds it all restores nothing of either backup: it fails
    component = get_component(subject.component)
    scratch = component.scratch_target(index.find(store, part.backup_id), "prefilled")
    restore.restore(subject.component, settings, RestoreRequest(source=source, target=scratch), store=store)
    prefilled = drill.drill(
        subject.component, settings, source, suffix="prefilled", store=store, record=False
    )
    assert not prefilled.passed
    for backup in (part, whole):
        assert any(f"of backup {backup.backup_id}" in p and "restored none" in p for p in prefilled.problems)
    assert subject.gone(scratch)

    keep_one = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    report = prune(store, subject.component, source, keep_one, utcnow(), grace_hours=0)
    assert report.removed == [] and set(report.plan.keep_ids) == {whole.backup_id, part.backup_id}

    # recovering the source as of now brings it back to what the two backups hold together
    scheduled = {"gcs": "gcs_sources", "bigquery": "bigquery_datasets"}[subject.component]
    configured = settings.model_copy(update={scheduled: [source]})
    operation = recover(configured, utcnow(), [subject.component], [source], yes=True, store=store)
    assert operation.outcome == "succeeded", operation.message
    assert subject.state(source) == expected
