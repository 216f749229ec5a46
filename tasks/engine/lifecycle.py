"""The one lifecycle every component runs through: backup, validate, restore, drill.

Every guarantee a backup tool lives by is written here once, over the component protocol
(tasks/engine/protocol.py), and held for every registered component by tests/contract/:

- backup: begin (in-progress marker) -> plan -> units in parallel -> commit the manifest last;
  any error abandons the run (no manifest, component leftovers freed) and leaves a failure record;
  validation follows unless told not to.
- validate: every stored object's size and crc32c, a sampled read-back (in units), then the
  component's own checks (right after the backup, in its run, against what the backup read:
  Context.just_read); the outcome is written into the manifest; a failure fails the run.
- restore: resolve -> the backup must belong to the named source -> primary, or the secondary copy
  when the primary is missing or damaged (said so) -> a damaged backup is refused before anything
  is written -> plan -> "replace" / "delete" refused without `overwrite` -> approval before any
  of them in an original location -> write -> verify the target against the backup -> record.
- drill: the same restore into a scratch target, verified, timed against the RTO, cleaned up.

Inside a Prefect flow run the steps run as Prefect tasks (backup units, restore copies and
validation's read-back in parallel on the task runner the settings choose); called outside one
(tests, drills run by hand) they run as plain calls (tasks/engine/units.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backstop.core.errors import ValidationFailed
from backstop.core.manifest import BackupManifest, ManifestEntry, entries_of
from blocks.settings import BackstopSettings
from tasks.catalog import backups as catalog
from tasks.catalog import locks
from tasks.catalog.stored import verify_stored
from tasks.engine import units
from tasks.engine.protocol import (
    BackupPlan,
    Context,
    StoredEntries,
    get_component,
    options_for,
    stored_options,
)
from tasks.storage.bucket import BackupStore, open_store
from tasks.storage.spool import EntrySpool


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
        with catalog.beating(store, manifest):  # a run of days stays in progress for prune
            plan = units.step(f"plan-{component.name}-{source}", component.plan_backup, ctx, manifest)
            if plan.describe:
                units.log(ctx, plan.describe)
            state = dict(plan.state)
            # Every entry goes to a spool on disk (a streaming plan fills its own as units are taken).
            spool = plan.carried if isinstance(plan.carried, EntrySpool) else EntrySpool(plan.carried)

            def done(unit_entries: list[ManifestEntry] | StoredEntries, unit_state: dict[str, Any]) -> None:
                if isinstance(unit_entries, StoredEntries):  # written by the unit: read it here
                    unit_entries = entries_of(
                        store.get_bytes(unit_entries.key), store.where(unit_entries.key)
                    )
                spool.add(unit_entries, written=True)
                units.merge_state(state, unit_state)

            units.run_units(component, ctx, manifest, plan.units, done, progress)
            units.merge_state(state, component.finish(ctx, manifest, plan, _entries(component, spool)))
            if (scope := component.scope(ctx.options)) is not None:
                state["scope"] = scope  # a backup of part of the source (the catalog header says so)
        # The commit clears the in-progress marker and heartbeats: no beat may come after it.
        reuse = locks.Reuse(spool.carried, plan.carried_from) if plan.retained_at_write else None
        committed = units.step(
            f"commit-{component.name}-{source}",
            catalog.commit_backup,
            store,
            manifest,
            spool,
            state,
            reuse,
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
        committed = validate(component.name, settings, committed, sample_percent, store, just_read=True)
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
        read_back = units.UnitBatches(ctx, "validate", f"validate-{component.name}-{manifest.source}-read")
        stored = verify_stored(ctx.store, manifest, percent, batches=read_back)
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
    just_read: bool = False,
) -> BackupManifest:
    """Validate one backup and record the outcome in its manifest; ValidationFailed names every problem.

    The component options are those the backup was taken with, updated by `options`. `just_read`:
    called by the backup that made it, in the same run (see Context.just_read).
    """
    component = get_component(component_name)
    store = store or open_store(settings)
    percent = catalog.sample_percent(settings, sample_percent)
    taken = stored_options(component, manifest)
    if options:  # given options (checked on their own) win over those the backup was taken with
        given = options_for(component, options).model_dump(exclude_unset=True)
        taken = options_for(component, taken.model_dump() | given)
    ctx = Context(settings, store, taken, just_read=just_read)
    try:
        problems, read_back = units.step(
            f"validate-{component.name}-{manifest.source}", check_backup, component, ctx, manifest, percent
        )
        return catalog.record_validation(store, manifest, problems, manifest.entry_count, read_back)
    except BaseException as exc:
        catalog.record_run(store, "validate", component.name, manifest.source, exc, manifest.backup_id)
        raise
