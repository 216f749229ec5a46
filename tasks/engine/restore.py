"""Restore, the one path every component's restore and drill takes (see tasks/engine/lifecycle.py):

resolve (a backup id, else the restore point: each part from its newest validated backup at or
before T, grouped by backup in tasks/engine/pieces.py) -> per backup: it must belong to the named
source -> primary, or the secondary copy when the primary is missing or damaged (said so) -> a
damaged backup is refused before anything is written -> plan; then over all of them as one plan:
"replace" / "delete" refused without `overwrite` -> one approval before any of them in an original
location -> write -> verify the target against each backup -> one run record naming every part's backup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backstop.core.errors import REFUSALS, Conflict, InvalidInput, ValidationFailed
from backstop.core.manifest import BackupManifest
from backstop.core.names import check_backup_id, parse_time
from backstop.core.restore_points import RestorePoint
from blocks.settings import BackstopSettings
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.catalog.stored import verify_stored
from tasks.engine import progress, units
from tasks.engine.approval import require_approval
from tasks.engine.lifecycle import loaded
from tasks.engine.pieces import Piece, check_validated, part_counts, pieces_of
from tasks.engine.protocol import (
    Context,
    RestorePlan,
    RestoreReport,
    RestoreRequest,
    get_component,
    options_for,
    stored_options,
)
from tasks.engine.secondary import RestoreSource, open_for_restore
from tasks.storage.bucket import BackupStore, open_store


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
    damaged = verify_stored(primary, manifest, 0).damaged
    intact = manifest.model_copy(
        update={"entries": [e for e in primary.iter_entries(manifest) if e.name not in damaged], "chunks": []}
    )
    reason = f"{len(damaged)} damaged entr{'y' if len(damaged) == 1 else 'ies'} skipped"
    return Opened(RestoreSource(primary, intact, False, reason), damaged)


def checked_request(component: Any, settings: BackstopSettings, request: RestoreRequest) -> RestoreRequest:
    """The request with its source, target and options checked (InvalidInput naming what is wrong):
    the one place a restore request is checked, before anything is read or written."""
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
    return request


def refuse_conflicts(plan: RestorePlan, request: RestoreRequest, backup_id: str) -> list[str]:
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


def approve(component: Any, backup_id: str, plan: RestorePlan, request: RestoreRequest, yes: bool) -> str:
    """Who approved changing the original location ('' when no approval is needed)."""
    if request.dry_run or not plan.into_original or not plan.destructive():
        return ""
    counts = plan.counts()
    return require_approval(
        f"restore of {component.name} backup {backup_id} replaces {counts.get('replace', 0)} "
        f"and deletes {counts.get('delete', 0)} item(s) in the original {plan.target}",
        yes=yes,
    )


def write_and_verify(
    component: Any, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
) -> list[str]:
    """Apply the plan, then compare the target with the backup: the differences found."""
    if request.dry_run:
        return []
    name = f"{component.name}-{plan.target}"
    what = f"restore {component.name}/{request.source}"
    progress.report(what, 2, 4, unit="steps (open, plan done; writing)")
    units.step(f"write-{name}", component.apply_restore, ctx, manifest, plan, request)
    progress.report(what, 3, 4, unit="steps (written; verifying)")
    problems: list[str] = units.step(
        f"verify-restore-{name}",
        component.verify_restored,
        ctx,
        manifest,
        plan.target,
        request.only,
        *([request.exclude] if request.exclude else []),  # given only to components with a scope
    )
    if request.exact:
        problems += units.step(f"verify-exact-{name}", left_after_exact, component, ctx, manifest, request)
    return problems


def left_after_exact(
    component: Any, ctx: Context, manifest: BackupManifest, request: RestoreRequest
) -> list[str]:
    """What an exact restore was to delete and the target still holds: the restore planned again
    must find nothing left to delete (the comparison of the target with the backup sees only what
    the backup holds, not what should be gone)."""
    again = component.plan_restore(ctx, manifest, request)
    return [
        f"still in {again.target} after an exact restore: {a['name']} (not in the backup)"
        for a in again.actions
        if a["change"] == "delete"
    ]


def open_and_plan(
    component: Any, settings: BackstopSettings, piece: Piece, store: BackupStore | None
) -> Context:
    """Open one piece's backup (primary or secondary, damaged ones refused) and plan its restore."""
    request = piece.request
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
    piece.source, piece.damaged = opened.source, opened.damaged
    piece.manifest = loaded(component, opened.source.store, opened.manifest)
    check_validated(piece)
    units.log(Context(settings, opened.source.store), opened.source.message)
    ctx = Context(settings, opened.source.store, request.options)
    piece.plan = units.step(
        f"plan-restore-{component.name}-{request.source}",
        component.plan_restore,
        ctx,
        piece.manifest,
        request,
    )
    piece.plan.actions += [{"name": n, "change": "skipped", "why": p} for n, p in opened.damaged.items()]
    scope = None if request.backup_id else component.scope(stored_options(component, piece.manifest))
    if piece.note or (scope and not component.holds(piece.manifest, request)):  # holds part only
        why = piece.note or (
            f"backup {piece.manifest.backup_id} holds only this part of {request.source}: the rest is not restored"
        )
        piece.plan.actions.append(
            {"name": ", ".join(scope or [piece.label or ""]), "change": "note", "why": why}
        )
        units.log(ctx, why)
    return ctx


def one_plan(pieces: list[Piece]) -> RestorePlan:
    """The pieces' plans as one: what the person approves and what overwrite is checked against."""
    plans = [p.plan for p in pieces if p.plan is not None]
    done: dict[str, int] = {}
    for plan in plans:
        for change, count in plan.done.items():
            done[change] = done.get(change, 0) + count
    # what an earlier piece already plans for the same name is not planned again (the dataset that
    # the tables of a backup laid over another go into); a piece's own actions are all kept
    actions: list[dict[str, Any]] = []
    for plan in plans:
        seen = {(a.get("name"), a["change"]) for a in actions}
        actions += [a for a in plan.actions if not seen or (a.get("name"), a["change"]) not in seen]
    return RestorePlan(
        target=plans[0].target,
        into_original=any(p.into_original for p in plans),
        actions=actions,
        done=done,
    )


def restore(
    component_name: str,
    settings: BackstopSettings,
    request: RestoreRequest,
    yes: bool = False,
    store: BackupStore | None = None,
    record: bool = True,
    point: RestorePoint | None = None,
) -> RestoreReport:
    """Restore `request.source` as the request says (see the module docstring): a backup id, else
    its restore point at `before` (or `point`; default the latest), every part from its backup
    under one plan, one overwrite check and one approval."""
    component = get_component(component_name)
    request = checked_request(component, settings, request)
    started = time.monotonic()
    backup_id = request.backup_id
    try:
        with index.headers_read_once():  # the restore point and the backups it names: one catalog
            pieces, point = pieces_of(component, settings, request, store, point)
            contexts = [open_and_plan(component, settings, piece, store) for piece in pieces]
        backup_id = ", ".join(p.manifest.backup_id for p in pieces)
        plan = one_plan(pieces)
        conflicts = refuse_conflicts(plan, request, backup_id)
        approval = approve(component, backup_id, plan, request, yes)
        problems: list[str] = []
        for piece, ctx in zip(pieces, contexts, strict=True):
            assert piece.plan is not None  # planned by open_and_plan
            problems += write_and_verify(component, ctx, piece.manifest, piece.plan, piece.request)
        plan = one_plan(pieces)  # counts the services reported while writing
        report = RestoreReport(
            component=component.name,
            source=request.source,
            backup_id=backup_id,
            target=plan.target,
            dry_run=request.dry_run,
            created=plan.count("create"),
            overwritten=plan.count("replace") + plan.count("delete"),
            unchanged=plan.count("unchanged"),
            conflicts=conflicts,
            actions=plan.actions,
            seconds=time.monotonic() - started,
            from_secondary=any(p.source.from_secondary for p in pieces if p.source),
            approval=approval,
            problems=problems,
        )
        for piece in pieces:
            report.parts |= part_counts(component, piece, point)
        if problems:
            raise ValidationFailed(
                f"restore of backup {backup_id} into {plan.target} finished but the target differs "
                f"from the backup: {'; '.join(problems[:5])}",
                problems,
            )
    except BaseException as exc:
        if record:
            catalog.record_run(
                store or open_store(settings), "restore", component.name, request.source, exc, backup_id,
                refused=isinstance(exc, REFUSALS),
            )  # fmt: skip
        raise
    if record and not request.dry_run:
        catalog.record_run(
            store or open_store(settings), "restore", component.name, request.source,
            backup_id=backup_id, details=report.summary(),
        )  # fmt: skip
    return report
