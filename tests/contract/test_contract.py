"""The promises every component keeps, held over every registered component (tests/contract/conftest.py).

Each test asserts what a user would see: the data restored equals the data backed up, a damaged
backup is named and refused with nothing written, an original location is never changed without
--overwrite and an approval, a part the backup does not hold is refused by name, a backup id of
another source is refused, a missing primary is served from the secondary, a killed backup leaves no
manifest, a drill passes and leaves nothing behind, prune keeps what the newest backup needs, a
backup that runs for days stays in progress (its heartbeat), and every failure leaves a record.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound, ValidationFailed
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine import drill, lifecycle, restore
from tasks.engine.protocol import RestoreRequest

pytestmark = [pytest.mark.integration, pytest.mark.contract]

ROOT = Path(__file__).resolve().parents[2]


def backed_up(subject: Any, settings: Any, store: Any) -> tuple[str, Any, Any]:
    """(source, its state, the validated manifest) of a fresh source."""
    source = subject.seed()
    before = subject.state(source)
    manifest = lifecycle.backup(subject.component, settings, source, store=store)
    assert manifest.status == "validated", manifest.validation
    assert manifest.entry_count <= 2 or manifest.chunks  # held with chunked manifests (conftest)
    return source, before, manifest


def flip_one_byte(store: Any, key: str) -> None:
    """Same size, one byte different: only a checksum can tell."""
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(key, bytes(data))


def test_backup_validate_list_restore_elsewhere_round_trips(subject: Any, settings: Any, store: Any) -> None:
    source, before, manifest = backed_up(subject, settings, store)
    listed = [m.backup_id for m in index.list_manifests(store, subject.component, source)]
    assert listed == [manifest.backup_id]

    target = subject.new_target(source)
    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, target=target), store=store
    )
    assert report.backup_id == manifest.backup_id and not report.problems
    assert subject.state(target) == before
    assert subject.state(source) == before  # the source was only read


def test_a_validation_without_an_id_takes_every_backup_written_since_not_only_the_latest(
    subject: Any, settings: Any, store: Any
) -> None:
    """Two backups land before the validation the first one triggered runs (a manual backup beside
    a scheduled one): it takes both, newest first, and both validate; then the latest again."""
    source = subject.seed()
    first = lifecycle.backup(subject.component, settings, source, validate_after=False, store=store)
    subject.change(source)
    second = lifecycle.backup(subject.component, settings, source, validate_after=False, store=store)
    taken = catalog.backups_to_validate(store, subject.component, [source])
    assert [m.backup_id for m in taken] == [second.backup_id, first.backup_id]
    for manifest in taken:
        assert lifecycle.validate(subject.component, settings, manifest, store=store).status == "validated"
    (again,) = catalog.backups_to_validate(store, subject.component, [source])
    assert again.backup_id == second.backup_id


def test_damaged_backup_is_named_by_validation_and_refused_by_restore(
    subject: Any, settings: Any, store: Any
) -> None:
    source, _, manifest = backed_up(subject, settings, store)
    victim = list(store.iter_entries(manifest))[-1]
    flip_one_byte(store, victim.stored_key)

    with pytest.raises(ValidationFailed) as failed:
        lifecycle.validate(subject.component, settings, manifest, sample_percent=0, store=store)
    assert any(repr(victim.name) in p for p in failed.value.problems)
    assert store.read_manifest(manifest.path).status == "invalid"

    target = subject.new_target(source)
    state_before = subject.state(target) if not subject.gone(target) else None
    request = RestoreRequest(source=source, target=target, backup_id=manifest.backup_id)
    with pytest.raises(ValidationFailed, match="damaged"):
        restore.restore(subject.component, settings, request, store=store)
    assert (subject.state(target) if not subject.gone(target) else None) == state_before  # nothing written


def test_a_restore_of_a_part_the_backup_does_not_hold_is_refused_naming_it(
    subject: Any, settings: Any, store: Any
) -> None:
    """`only` naming what the backup does not hold (a typo of a table, file, prefix, namespace)
    restores nothing and says so, by name: no restore passes having restored none of what was asked."""
    source, _, manifest = backed_up(subject, settings, store)
    target = subject.new_target(source)
    state_before = subject.state(target) if not subject.gone(target) else None
    request = RestoreRequest(
        source=source, target=target, backup_id=manifest.backup_id, only=[subject.absent_part]
    )
    with pytest.raises(NotFound, match=re.escape(subject.absent_part)):
        restore.restore(subject.component, settings, request, store=store)
    assert (subject.state(target) if not subject.gone(target) else None) == state_before  # nothing written


NOT_ASKED = "overwrite was not asked for"  # the lifecycle's refusal (not the approval's "not approved")


@pytest.mark.parametrize("how", ["change", "change_one_kind"])
def test_original_is_never_changed_without_overwrite_and_approval(
    subject: Any, settings: Any, store: Any, how: str
) -> None:
    """Any change (a whole one, and one of a single kind: metadata only) is a "replace" that the
    lifecycle refuses without overwrite, and an approval is needed before it is undone."""
    source, before, _ = backed_up(subject, settings, store)
    getattr(subject, how)(source)
    changed = subject.state(source)

    with pytest.raises(Conflict, match=NOT_ASKED):
        restore.restore(subject.component, settings, RestoreRequest(source=source), store=store)
    assert subject.state(source) == changed

    plan = restore.restore(
        subject.component, settings, RestoreRequest(source=source, dry_run=True), store=store
    )
    assert plan.dry_run and subject.state(source) == changed

    with pytest.raises(Conflict, match="not approved"):  # overwrite asked, but nobody approved
        restore.restore(
            subject.component, settings, RestoreRequest(source=source, overwrite=True), store=store
        )
    assert subject.state(source) == changed

    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, overwrite=True), yes=True, store=store
    )
    assert subject.state(source) == before
    assert report.approval.startswith("approved")
    runs = catalog.list_runs(store, subject.component, source)
    assert any(r.kind == "restore" and r.outcome == "succeeded" and r.details.get("approval") for r in runs)


def test_an_identical_target_plans_unchanged(subject: Any, settings: Any, store: Any) -> None:
    """Nothing changed since the backup: the plan replaces and deletes nothing, in the original
    and in a target the backup was restored into."""
    source, _, _ = backed_up(subject, settings, store)
    target = subject.new_target(source)
    restore.restore(subject.component, settings, RestoreRequest(source=source, target=target), store=store)
    for where in (None, target):
        request = RestoreRequest(source=source, target=where, overwrite=True, exact=True, dry_run=True)
        plan = restore.restore(subject.component, settings, request, store=store)
        changed = [a for a in plan.actions if a["change"] in ("replace", "delete", "create")]
        assert changed == [], f"into {where or 'the original'}: {changed}"
        assert plan.unchanged > 0


def test_exact_deletes_only_additions_in_scope_with_overwrite_and_approval(
    subject: Any, settings: Any, store: Any
) -> None:
    source = subject.seed()
    manifest = lifecycle.backup(subject.component, settings, source, subject.scope_options, store=store)
    assert manifest.status == "validated", manifest.validation
    subject.add_outside_scope(source)
    at_backup = subject.state(source)  # what is outside the backed-up scope stays as it is
    subject.add_in_scope(source)
    added = subject.state(source)

    def run(yes: bool = False, **asked: Any) -> Any:
        request = RestoreRequest(source=source, **asked)
        return restore.restore(subject.component, settings, request, yes=yes, store=store)

    plan = run(exact=True, overwrite=True, dry_run=True)
    deletes = sorted(a["name"] for a in plan.actions if a["change"] == "delete")
    assert deletes and all("added" in name for name in deletes), deletes
    assert not [a for a in plan.actions if a["change"] == "replace"]
    with pytest.raises(Conflict, match=NOT_ASKED):
        run(exact=True)
    with pytest.raises(Conflict, match="not approved"):
        run(exact=True, overwrite=True)
    assert subject.state(source) == added

    run(overwrite=True, yes=True)  # not exact: what was added is kept
    assert subject.state(source) == added
    report = run(exact=True, overwrite=True, yes=True)
    assert subject.state(source) == at_backup and report.approval.startswith("approved")


def test_an_exact_restore_that_leaves_something_added_in_scope_fails_naming_it(
    subject: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The post-restore check of an exact restore also sees what should be gone: an addition in
    scope that is still there after the writes (here written while the restore ran) fails it."""
    from tasks.engine.protocol import get_component

    source = subject.seed()
    manifest = lifecycle.backup(subject.component, settings, source, subject.scope_options, store=store)
    assert manifest.status == "validated", manifest.validation
    component = get_component(subject.component)
    apply_restore = component.apply_restore

    def written_meanwhile(ctx: Any, manifest: Any, plan: Any, request: Any) -> None:
        apply_restore(ctx, manifest, plan, request)
        subject.add_in_scope(source)

    monkeypatch.setattr(component, "apply_restore", written_meanwhile)
    request = RestoreRequest(source=source, overwrite=True, exact=True)
    with pytest.raises(ValidationFailed, match="after an exact restore") as failed:
        restore.restore(subject.component, settings, request, yes=True, store=store)
    assert "added" in str(failed.value)


def test_backup_of_another_source_is_refused_with_nothing_written(
    subject: Any, settings: Any, store: Any
) -> None:
    first, first_state, manifest = backed_up(subject, settings, store)
    other = subject.seed()
    subject.change(other)
    other_state = subject.state(other)
    request = RestoreRequest(source=other, backup_id=manifest.backup_id, overwrite=True)
    with pytest.raises(InvalidInput, match="not"):
        restore.restore(subject.component, settings, request, yes=True, store=store)
    assert subject.state(other) == other_state and subject.state(first) == first_state


def test_restore_falls_back_to_the_secondary_copy(subject: Any, settings: Any, store: Any) -> None:
    from tasks.engine.secondary import copy_to_secondary
    from tasks.storage.bucket import open_store

    source, before, manifest = backed_up(subject, settings, store)
    copied = copy_to_secondary(store, open_store(settings, secondary=True), manifest)
    assert copied.secondary is not None and copied.secondary.ok
    store.delete([manifest.path])

    target = subject.new_target(source)
    report = restore.restore(
        subject.component, settings, RestoreRequest(source=source, target=target), store=store
    )
    assert report.from_secondary and subject.state(target) == before


def test_secondary_copy_with_a_flipped_byte_is_not_verified(subject: Any, settings: Any, store: Any) -> None:
    from tasks.engine.secondary import copy_to_secondary
    from tasks.storage.bucket import open_store

    _, _, manifest = backed_up(subject, settings, store)
    secondary = open_store(settings, secondary=True)
    entry = list(store.iter_entries(manifest))[-1]
    secondary.put_bytes(entry.stored_key, b"x")  # a wrong copy already there: must be replaced, not trusted
    flip_one_byte(store, entry.stored_key)  # and the primary is damaged: the copy must not verify
    copied = copy_to_secondary(store, secondary, manifest)
    assert copied.secondary is not None and not copied.secondary.ok
    assert any(repr(entry.name) in p for p in copied.secondary.problems)


def _backup_held_before_its_commit(
    subject: Any, settings: Any, source: str, tmp_path: Path, on_sigterm: bool = False
) -> subprocess.Popen[bytes]:
    """A backup of `source` in a process of its own, held once its units are done, before its
    commit; `on_sigterm`: SIGTERM unwinds it as in the `backstop` script and a warm command's child."""
    from prefect.settings import PREFECT_API_URL

    ready = tmp_path / "ready"
    child = (
        "import os, sys, time\n"
        "from blocks.settings import BackstopSettings\n"
        "from tasks.catalog import backups as catalog\n"
        "from tasks.engine import lifecycle\n"
        + ("from backstop_cli.main import unwind_on_sigterm\nunwind_on_sigterm()\n" if on_sigterm else "")
        + "settings = BackstopSettings.model_validate_json(os.environ['BS_SETTINGS'])\n"
        "def hang(*args, **kwargs):\n"
        "    open(os.environ['BS_READY'], 'w').write('units done')\n"
        "    time.sleep(120)\n"
        "catalog.commit_backup = hang\n"
        "lifecycle.backup(sys.argv[1], settings, sys.argv[2], validate_after=False)\n"
    )
    env = os.environ | {"BS_SETTINGS": settings.model_dump_json(), "BS_READY": str(ready)}
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    process = subprocess.Popen(
        [sys.executable, "-c", child, subject.component, source], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 90
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready.exists(), f"the backup process ended early ({process.returncode})"
    return process


def test_sigkill_mid_backup_leaves_no_manifest_and_the_next_run_completes(
    subject: Any, settings: Any, store: Any, tmp_path: Path
) -> None:
    source = subject.seed()
    process = _backup_held_before_its_commit(subject, settings, source, tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate()

    assert index.list_manifests(store, subject.component, source) == []
    manifest = lifecycle.backup(subject.component, settings, source, store=store)
    assert manifest.status == "validated"


def test_sigterm_mid_backup_ends_as_an_abandoned_run_not_a_backup(
    subject: Any, settings: Any, store: Any, tmp_path: Path
) -> None:
    """`kill` (SIGTERM) on a backup in flight: it unwinds as on Ctrl-C, its run is recorded as
    abandoned, no backup of it is listed, and the next run completes."""
    source = subject.seed()
    process = _backup_held_before_its_commit(subject, settings, source, tmp_path, on_sigterm=True)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)

    assert process.returncode != 0 and b"Terminated" in err, err[-2000:]
    assert index.list_manifests(store, subject.component, source) == []
    runs = [(r.kind, r.outcome, r.error_kind) for r in catalog.list_runs(store, subject.component, source)]
    assert runs == [("backup", "abandoned", "Terminated")]
    manifest = lifecycle.backup(subject.component, settings, source, store=store)
    assert manifest.status == "validated"


def test_a_backup_running_past_its_markers_window_stays_in_progress_by_its_heartbeat(
    subject: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup beats beside its in-progress marker while it runs (hourly; here every 0.1 s), so one
    that runs longer than the marker's window (24 hours; here 0.5 s) is still in progress to prune,
    which then keeps off the copies it has made; the commit clears marker and heartbeats."""
    from tasks.engine.protocol import get_component

    window = 0.5 / 3600
    monkeypatch.setattr(catalog, "HEARTBEAT_SECONDS", 0.1)
    component = get_component(subject.component)
    plan_backup = component.plan_backup
    seen: list[list[str]] = []

    def long_plan(ctx: Any, manifest: Any) -> Any:
        time.sleep(0.6)  # the marker alone is stale now: only a heartbeat keeps the run in progress
        deadline, found = time.monotonic() + 20, []  # (a loaded machine may write a beat late)
        while not found and time.monotonic() < deadline:
            found = store.in_progress(subject.component, manifest.source, younger_than_hours=window)
        seen.append(found)
        return plan_backup(ctx, manifest)

    monkeypatch.setattr(component, "plan_backup", long_plan)
    source = subject.seed()
    manifest = lifecycle.backup(subject.component, settings, source, store=store)
    assert manifest.status == "validated" and seen == [[manifest.backup_id]], seen
    assert store.in_progress(subject.component, source) == []
    assert list(store.list(f"_inprogress/{subject.component}/{source}/")) == []


def test_drill_passes_and_removes_its_scratch_target(subject: Any, settings: Any, store: Any) -> None:
    source, _, manifest = backed_up(subject, settings, store)
    result = drill.drill(subject.component, settings, source, store=store)
    assert result.passed, result.problems
    assert result.backup_id == manifest.backup_id and result.cleaned_up
    assert result.target is not None and subject.gone(result.target)


def test_prune_keeps_what_the_newest_backup_needs(subject: Any, settings: Any, store: Any) -> None:
    from backstop.core.retention import RetentionPolicy
    from tasks.operations.prune import prune

    source, _, first = backed_up(subject, settings, store)
    subject.change(source)
    latest_state = subject.state(source)
    second = lifecycle.backup(subject.component, settings, source, store=store)
    policy = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    prune(store, subject.component, source, policy, datetime.now(UTC), grace_hours=0)
    assert [m.backup_id for m in index.list_manifests(store, subject.component, source)] == [second.backup_id]
    with pytest.raises((NotFound, ValidationFailed, InvalidInput)):
        index.find(store, first.backup_id)

    target = subject.new_target(source)
    restore.restore(subject.component, settings, RestoreRequest(source=source, target=target), store=store)
    assert subject.state(target) == latest_state


def test_unknown_source_fails_clearly_and_is_recorded(subject: Any, settings: Any, store: Any) -> None:
    with pytest.raises(BackstopError) as failed:
        lifecycle.backup(subject.component, settings, "nosuchsource1", store=store)
    assert "nosuchsource1" in str(failed.value)
    assert index.list_manifests(store, subject.component) == []
    (record,) = catalog.list_runs(store, subject.component, "nosuchsource1")
    assert (record.kind, record.outcome) == ("backup", "failed") and "nosuchsource1" in record.message


def test_malformed_source_name_is_refused_with_nothing_written(
    subject: Any, settings: Any, store: Any
) -> None:
    with pytest.raises(InvalidInput, match="Not A Source!"):
        lifecycle.backup(subject.component, settings, "Not A Source!", store=store)
    assert list(store.client.list_blobs(store.bucket_name)) == []
