"""The one lifecycle every component runs through: backup, validate, restore, drill.

Every guarantee a backup tool lives by is written here once, over the component protocol
(tasks/engine/protocol.py), and held for every registered component by tests/contract/:

- backup: begin (in-progress marker) -> plan -> units in parallel -> commit the manifest last;
  any error abandons the run (no manifest, component leftovers freed) and leaves a failure record;
  validation follows unless told not to.
- validate: every stored object's size and crc32c, a sampled read-back, then the component's own
  checks; the outcome is written into the manifest; a failure fails the run.
- restore: resolve -> the backup must belong to the named source -> primary, or the secondary copy
  when the primary is missing or damaged (said so) -> a damaged backup is refused before anything
  is written -> plan -> "replace" / "delete" refused without `overwrite` -> approval before any
  of them in an original location -> write -> verify the target against the backup -> record.
- drill: the same restore into a scratch target, verified, timed against the RTO, cleaned up.

Inside a Prefect flow run the steps run as Prefect tasks (backup units in parallel on the task
runner the settings choose); called outside one (tests, drills run by hand) they run as plain
calls (tasks/engine/units.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backstop.core.errors import BackstopError, Conflict, InvalidInput, ValidationFailed
from backstop.core.manifest import BackupManifest, ManifestEntry, entries_of
from backstop.core.names import check_backup_id, parse_time
from backstop.core.objectives import DrillResult, drill_verdict, new_drill_id, rto_problem
from blocks.settings import BackstopSettings
from tasks.catalog import backups as catalog
from tasks.engine import units
from tasks.engine.protocol import (
    BackupPlan,
    Context,
    RestorePlan,
    RestoreReport,
    RestoreRequest,
    StoredEntries,
    get_component,
    options_for,
    stored_options,
)
from tasks.storage.context import open_store
from tasks.engine.secondary import RestoreSource, open_for_restore
from tasks.storage.spool import EntrySpool
from tasks.storage.bucket import BackupStore


# -- backup --------------------------------------------------------------------------------
def backup(
    component_name: str,
    settings: BackstopSettings,
    source: str,
    options: Any = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    store: BackupStore | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BackupManifest:
    """Back up one source; the manifest is written last, and nothing is committed on any error.

    `progress(units done, units)` is called as units finish.
    """
    component = get_component(component_name)
    # Malformed input is no run: refused before anything is written.
    source = component.check_source(settings, source)
    if validate_after:
        sample_percent = catalog.sample_percent(settings, sample_percent)
    ctx = Context(settings, store or open_store(settings), options_for(component, options), log)
    store = ctx.store
    manifest: BackupManifest | None = None
    plan: BackupPlan | None = None
    spool: EntrySpool | None = None
    try:
        manifest = catalog.begin_backup(store, component.name, source, ctx.options.model_dump(mode="json"))
        plan = units.step(f"plan-{component.name}-{source}", component.plan_backup, ctx, manifest)
        if plan.describe:
            units.log(ctx, plan.describe)
        state = dict(plan.state)
        # Every entry goes to a spool on disk (a streaming plan fills its own as units are taken).
        spool = plan.carried if isinstance(plan.carried, EntrySpool) else EntrySpool(plan.carried)

        def done(unit_entries: list[ManifestEntry] | StoredEntries, unit_state: dict[str, Any]) -> None:
            if isinstance(unit_entries, StoredEntries):  # written by the unit: read it here
                unit_entries = entries_of(store.get_bytes(unit_entries.key), store.where(unit_entries.key))
            spool.add(unit_entries)
            units.merge_state(state, unit_state)

        units.run_units(component, ctx, manifest, plan.units, done, progress)
        units.merge_state(state, component.finish(ctx, manifest, plan, _entries(component, spool)))
        committed = units.step(
            f"commit-{component.name}-{source}", catalog.commit_backup, store, manifest, spool, state
        )
        entry_count = committed.entry_count
    except BaseException as exc:
        try:
            if manifest is not None:
                component.discard(ctx, manifest, _entries(component, spool) if spool is not None else [])
        finally:
            if manifest is not None:
                catalog.abandon_backup(store, manifest)
            catalog.record_run(
                store, "backup", component.name, source, exc, manifest.backup_id if manifest else None
            )
        raise
    finally:
        for held in (spool, plan.carried if plan else None):
            if isinstance(held, EntrySpool):
                held.close()
    units.log(
        ctx, f"backup {committed.backup_id} of {component.name}/{source} committed: {entry_count} entries"
    )
    if validate_after:
        committed = validate(component.name, settings, committed, sample_percent, store)
    return committed


def _entries(component: Any, spool: EntrySpool) -> Any:
    """A backup's entries as the component takes them: the spool itself when it streams them,
    else a list (components whose backups hold few entries)."""
    return spool if component.streams_entries else list(spool)


def loaded(component: Any, store: BackupStore, manifest: BackupManifest) -> BackupManifest:
    """`manifest` as the component takes it: as read when it streams entries (`iter_entries`),
    else with every entry in memory."""
    return manifest if component.streams_entries else store.with_entries(manifest)


# -- validate ------------------------------------------------------------------------------
def check_backup(
    component: Any, ctx: Context, manifest: BackupManifest, percent: float
) -> tuple[list[str], int]:
    """(problems, objects re-read): stored objects first, then the component's own checks."""
    try:
        stored = catalog.verify_stored(ctx.store, manifest, percent)
    except ValidationFailed as exc:  # the manifest's own chunks are missing or damaged
        return [str(exc)], 0
    checked = loaded(component, ctx.store, manifest)
    problems = stored.problems + component.check(ctx, checked, percent, set(stored.damaged))
    return problems, stored.read_back


def validate(
    component_name: str,
    settings: BackstopSettings,
    manifest: BackupManifest,
    sample_percent: float | None = None,
    store: BackupStore | None = None,
    options: dict[str, Any] | None = None,
) -> BackupManifest:
    """Validate one backup and record the outcome in its manifest; ValidationFailed names every problem.

    The component options are those the backup was taken with, updated by `options`.
    """
    component = get_component(component_name)
    store = store or open_store(settings)
    percent = catalog.sample_percent(settings, sample_percent)
    taken = stored_options(component, manifest)
    if options:  # given options (checked on their own) win over those the backup was taken with
        given = options_for(component, options).model_dump(exclude_unset=True)
        taken = options_for(component, taken.model_dump() | given)
    ctx = Context(settings, store, taken)
    try:
        problems, read_back = units.step(
            f"validate-{component.name}-{manifest.source}", check_backup, component, ctx, manifest, percent
        )
        return catalog.record_validation(store, manifest, problems, manifest.entry_count, read_back)
    except BaseException as exc:
        catalog.record_run(store, "validate", component.name, manifest.source, exc, manifest.backup_id)
        raise


# -- restore -------------------------------------------------------------------------------
@dataclass
class Opened:
    """The backup a restore reads, where from, and what of it is damaged (skip_damaged only)."""

    source: RestoreSource
    damaged: dict[str, str]

    @property
    def manifest(self) -> BackupManifest:
        return self.source.manifest


def open_backup(
    settings: BackstopSettings,
    component: str,
    source: str,
    backup_id: str | None,
    before: str | None,
    skip_damaged: bool = False,
    store: BackupStore | None = None,
    where: Callable[[BackupManifest], bool] | None = None,
) -> Opened:
    """The backup to restore, from the primary or else the secondary copy (saying why).

    A backup of another source is refused outright (InvalidInput, never a fallback). A backup
    damaged in both copies is refused (ValidationFailed) unless `skip_damaged`, which restores the
    primary's intact entries and names the others.
    """
    if backup_id and before:
        raise InvalidInput("give a backup id or a time (before), not both")
    moment = parse_time(before) if before else None
    try:
        return Opened(
            open_for_restore(settings, component, source, backup_id, moment, primary=store, where=where), {}
        )
    except ValidationFailed:
        if not skip_damaged:
            raise
    primary = store or open_store(settings)
    manifest = catalog.resolve_backup(
        primary, component, source, backup_id, moment, validated_only=False, where=where
    )
    damaged = catalog.verify_stored(primary, manifest, 0).damaged
    intact = manifest.model_copy(
        update={"entries": [e for e in primary.iter_entries(manifest) if e.name not in damaged], "chunks": []}
    )
    reason = f"{len(damaged)} damaged entr{'y' if len(damaged) == 1 else 'ies'} skipped"
    return Opened(RestoreSource(primary, intact, False, reason), damaged)


def _refuse_conflicts(plan: RestorePlan, request: RestoreRequest, backup_id: str) -> list[str]:
    """Names the restore may not touch: anything blocked, and replaces / deletes without overwrite."""
    refused = [a for a in plan.actions if a["change"] == "blocked"]
    if not request.overwrite:
        refused += plan.destructive()
    names = [str(a.get("name")) for a in refused]
    if names and not request.dry_run:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise Conflict(
            f"restore of backup {backup_id} into {plan.target} would replace or delete {len(names)} existing "
            f"item(s) ({shown}) and overwrite was not asked for: nothing was written (see --dry-run, "
            "restore elsewhere with --target, or pass --overwrite)"
        )
    return names


def restore(
    component_name: str,
    settings: BackstopSettings,
    request: RestoreRequest,
    yes: bool = False,
    store: BackupStore | None = None,
    record: bool = True,
) -> RestoreReport:
    """Restore a backup of `request.source` as the request says (see the module docstring)."""
    from tasks.engine.approval import require_approval

    component = get_component(component_name)
    request.source = component.check_source(settings, request.source)
    if request.target:
        request.target = component.check_target(settings, request.target)
    request.options = options_for(component, request.options)
    if request.backup_id and request.before:
        raise InvalidInput("give a backup id or a time (before), not both")
    if request.backup_id:
        check_backup_id(request.backup_id)
    if request.before:
        parse_time(request.before)
    started = time.monotonic()
    backup_id = request.backup_id
    try:
        opened = units.step(
            f"open-{component.name}-{request.source}",
            open_backup,
            settings,
            component.name,
            request.source,
            request.backup_id,
            request.before,
            request.skip_damaged,
            store,
            lambda m: component.holds(m, request),
        )
        read_from = opened.source
        manifest = loaded(component, read_from.store, opened.manifest)
        backup_id = manifest.backup_id
        units.log(Context(settings, read_from.store), read_from.message)
        ctx = Context(settings, read_from.store, request.options)
        plan = units.step(
            f"plan-restore-{component.name}-{request.source}", component.plan_restore, ctx, manifest, request
        )
        plan.actions += [{"name": n, "change": "skipped", "why": p} for n, p in opened.damaged.items()]
        conflicts = _refuse_conflicts(plan, request, manifest.backup_id)
        approval = ""
        if not request.dry_run and plan.into_original and plan.destructive():
            counts = plan.counts()
            approval = require_approval(
                f"restore of {component.name} backup {manifest.backup_id} replaces {counts.get('replace', 0)} "
                f"and deletes {counts.get('delete', 0)} item(s) in the original {plan.target}",
                yes=yes,
            )
        problems: list[str] = []
        if not request.dry_run:
            units.step(
                f"write-{component.name}-{plan.target}", component.apply_restore, ctx, manifest, plan, request
            )
            problems = units.step(
                f"verify-restore-{component.name}-{plan.target}",
                component.verify_restored,
                ctx,
                manifest,
                plan.target,
                request.only,
            )
        report = RestoreReport(
            component=component.name,
            source=request.source,
            backup_id=manifest.backup_id,
            target=plan.target,
            dry_run=request.dry_run,
            created=plan.count("create"),
            overwritten=plan.count("replace") + plan.count("delete"),
            unchanged=plan.count("unchanged"),
            conflicts=conflicts,
            actions=plan.actions,
            seconds=time.monotonic() - started,
            from_secondary=read_from.from_secondary,
            approval=approval,
            problems=problems,
        )
        if problems:
            raise ValidationFailed(
                f"restore of backup {manifest.backup_id} into {plan.target} finished but the target differs "
                f"from the backup: {'; '.join(problems[:5])}",
                problems,
            )
    except BaseException as exc:
        if record:
            catalog.record_run(
                store or open_store(settings), "restore", component.name, request.source, exc, backup_id
            )
        raise
    if record and not request.dry_run:
        catalog.record_run(
            store or open_store(settings),
            "restore",
            component.name,
            request.source,
            backup_id=backup_id,
            details=report.summary(),
        )
    return report


# -- drill ---------------------------------------------------------------------------------
def drill(
    component_name: str,
    settings: BackstopSettings,
    source: str,
    suffix: str | None = None,
    store: BackupStore | None = None,
    record: bool = True,
) -> DrillResult:
    """Restore the newest validated backup of `source` into a scratch target, verify it, time it
    against the RTO, and always remove the scratch target. Failures are reported, not raised."""
    from tasks.engine.drill import write_drill

    component = get_component(component_name)
    store = store or open_store(settings)
    started = datetime.now(UTC)
    drill_id = new_drill_id(started)
    rto_minutes = settings.objectives_for(component.name).rto_minutes
    problems: list[str] = []
    backup_id = target = None
    seconds = 0.0
    restored = 0
    cleaned_up = True
    try:
        manifest = catalog.resolve_backup(store, component.name, source)
        backup_id = manifest.backup_id
        target = component.scratch_target(manifest, suffix or drill_id.lower())
        began = time.perf_counter()
        try:
            report = restore(
                component.name,
                settings,
                RestoreRequest(source=source, target=target, backup_id=backup_id),
                store=store,
                record=False,
            )
            seconds = time.perf_counter() - began
            restored = report.created + report.overwritten
        finally:
            try:
                component.remove_target(settings, target)
            except Exception as exc:  # keep the drill's own outcome; report the leftover
                cleaned_up = False
                problems.append(f"scratch target {target} was not removed: {exc}")
    except ValidationFailed as exc:
        problems += exc.problems or [str(exc)]
    except BackstopError as exc:
        problems.append(str(exc))
    except Exception as exc:  # a drill reports a crashing restore as a failed drill, with its cause
        problems.append(f"{type(exc).__name__}: {exc}")
    passed, over_rto = drill_verdict(seconds, rto_minutes, problems)
    if over_rto:
        problems.append(rto_problem(seconds, rto_minutes))
    result = DrillResult(
        drill_id=drill_id,
        component=component.name,
        source=source,
        backup_id=backup_id,
        target=target,
        started_at=started,
        seconds=seconds,
        rto_minutes=rto_minutes,
        restored=restored,
        passed=passed,
        over_rto=over_rto,
        cleaned_up=cleaned_up,
        problems=problems,
    )
    if record:
        write_drill(store, result)
    return result
