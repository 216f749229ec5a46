"""Recover the whole platform as of a point in time: one planned, approved, recorded, checked operation.

`recover` chooses the restore point at T (each part from its newest validated backup at or before T,
tasks/catalog/points.py) of every configured source of every registered component (or the ones given), records the plan as an operation in the catalog
(`operations/<operation id>/<nnnn>.json`, a new object at every change of state), asks one approval
covering the whole plan when the originals are overwritten, then runs one `tasks.engine.restore.restore`
per source in dependency order (backstop.core.recovery.ORDER), each followed by its post-restore checks
(tasks/operations/recover_checks.py). The first failed step or check stops the operation; the record says
which steps completed and `recover(resume=OPERATION_ID)` continues from the first incomplete one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound, ValidationFailed
from backstop.core.manifest import utcnow
from backstop.core.names import parse_time
from backstop.core.recovery import (
    OPERATIONS_PREFIX,
    RecoveryOperation,
    RecoveryStep,
    new_operation_id,
    operation_key,
    order_key,
    plan_recovery,
    summary_lines,
)
from backstop.core.restore_points import PointPart, RestorePoint
from blocks.settings import BackstopSettings
from tasks.catalog import index, points
from tasks.engine import restore
from tasks.engine.approval import covered_by, os_user, require_approval
from tasks.engine.progress import report
from tasks.engine.protocol import COMPONENTS, RestoreRequest, get_component
from tasks.operations.recover_checks import component_check, user_checks
from tasks.storage.bucket import BackupStore, open_store

Notify = Callable[[str, str], None]

# A recovery as of a time ahead of this clock by more than this is refused (a typo, not clock skew).
FUTURE_SLACK = timedelta(minutes=5)


# -- the catalog of operations ---------------------------------------------------------------
def save_operation(store: BackupStore, operation: RecoveryOperation) -> None:
    """Write the operation's current state as the next object of its folder."""
    sequence = len(store.list(f"{OPERATIONS_PREFIX}{operation.operation_id}/"))
    store.put_bytes(
        operation_key(operation.operation_id, sequence),
        operation.model_dump_json(indent=1).encode(),
        content_type="application/json",
    )


def load_operation(store: BackupStore, operation_id: str) -> RecoveryOperation:
    """The latest state of an operation; NotFound names the id."""
    if not operation_id or "/" in operation_id or not operation_id.replace("-", "").isalnum():
        raise InvalidInput(f"malformed operation id {operation_id!r}")
    keys = sorted(store.list(f"{OPERATIONS_PREFIX}{operation_id}/"))
    if not keys:
        raise NotFound(f"no recovery operation {operation_id} in {store.where(OPERATIONS_PREFIX)}")
    return RecoveryOperation.model_validate_json(store.get_bytes(keys[-1]))


def list_operations(store: BackupStore) -> list[RecoveryOperation]:
    """Every operation in its latest state, newest first (a damaged record is skipped)."""
    latest: dict[str, str] = {}
    for key in sorted(store.list(OPERATIONS_PREFIX)):
        latest[key.removeprefix(OPERATIONS_PREFIX).split("/", 1)[0]] = key
    found = []
    for key in latest.values():
        try:
            found.append(RecoveryOperation.model_validate_json(store.get_bytes(key)))
        except ValueError:
            continue
    return sorted(found, key=lambda o: (o.started_at, o.operation_id), reverse=True)


# -- planning ----------------------------------------------------------------------------------
def wanted_sources(
    settings: BackstopSettings, components: list[str] | None, sources: list[str] | None
) -> list[tuple[str, str]]:
    """(component, source) pairs: every configured source of the components given (default all),
    narrowed to `sources` when given; a named source no component configures is refused."""
    chosen = components or sorted(COMPONENTS, key=order_key)
    pairs = []
    for name in chosen:
        component = get_component(name)
        pairs += [(component.name, s) for s in component.sources(settings)]
    if sources:
        unknown = [s for s in sources if not any(s == source for _, source in pairs)]
        if unknown:
            raise InvalidInput(
                f"source(s) {', '.join(unknown)} not configured for {', '.join(chosen)}: check the settings"
            )
        pairs = [(c, s) for c, s in pairs if s in sources]
    if not pairs:
        raise NotFound(f"no sources configured for {', '.join(chosen)}: nothing to recover")
    return pairs


def step_point(step: RecoveryStep, as_of: datetime) -> RestorePoint:
    """The restore point a step restores, pinned to the backups its plan chose."""
    parts = [PointPart(part=part, backup_id=backup_id) for part, backup_id in step.parts.items()]
    return RestorePoint(
        component=step.component, source=step.source, as_of=as_of, parts=parts, overlays=step.overlays
    )


def _request(step: RecoveryStep, exact: bool, dry_run: bool = False) -> RestoreRequest:
    """The restore a step runs: its restore point (a step recorded before points: its one backup),
    overwriting, exact unless the operation keeps newer items."""
    return RestoreRequest(
        source=step.source,
        target=step.target,
        backup_id=None if step.parts else step.backup_id,
        overwrite=True,
        dry_run=dry_run,
        exact=exact,
    )


def _overwrites(
    settings: BackstopSettings, store: BackupStore, step: RecoveryStep, exact: bool, as_of: datetime
) -> str:
    """What the step would replace or delete in its original location (its restore's dry run)."""
    request = _request(step, exact, dry_run=True)
    try:
        report = restore.restore(
            step.component, settings, request, store=store, record=False, point=step_point(step, as_of)
        )
    except BackstopError as exc:
        return f"unknown (dry run failed: {exc})"[:300]
    counts = {c: sum(1 for a in report.actions if a["change"] == c) for c in ("replace", "delete")}
    # every replace and delete is listed; creates are counted (a large bucket lists only a sample)
    return f"replaces {counts['replace']}, deletes {counts['delete']}, creates {report.created}"


def plan_operation(
    settings: BackstopSettings,
    store: BackupStore,
    as_of: datetime,
    components: list[str] | None = None,
    sources: list[str] | None = None,
    target_suffix: str | None = None,
    who: str = "",
    reason: str = "",
    exact: bool = True,
) -> RecoveryOperation:
    """The operation: the plan per source, and one step per source that has a backup before T.

    `exact` (the default): what appeared after T in each recovered scope is planned as deletes,
    covered by the operation's one approval; False (`--keep-newer`) keeps it.
    """
    if as_of > utcnow() + FUTURE_SLACK:
        raise InvalidInput(f"{as_of.isoformat()} is in the future: recover as of now or a time before it")
    wanted = wanted_sources(settings, components, sources)
    plan = plan_recovery(
        as_of,
        [points.restore_point(store, c, s, get_component(c).parts, as_of, lambda _: None) for c, s in wanted],
    )
    operation = RecoveryOperation(
        operation_id=new_operation_id(),
        as_of=as_of,
        started_at=utcnow(),
        who=who or os_user(),
        reason=reason,
        into_original=not target_suffix,
        target_suffix=target_suffix,
        exact=exact,
        plan=plan,
    )
    for planned in plan:
        if planned.backup_id is None:
            continue
        step = RecoveryStep(
            component=planned.component,
            source=planned.source,
            backup_id=planned.backup_id,
            parts={p.part: p.backup_id for p in planned.parts if p.backup_id},
            overlays=planned.overlays,
        )
        if planned.missing_parts:
            step.overwrites = f"not restorable: no backup of part {', '.join(planned.missing_parts)} before T"
        elif target_suffix:
            component = get_component(planned.component)
            step.target = component.scratch_target(index.find(store, planned.backup_id), target_suffix)
            step.overwrites = "nothing (alternate target)"
        else:
            step.overwrites = _overwrites(settings, store, step, exact, as_of)
        operation.steps.append(step)
    if not operation.steps:
        raise NotFound(
            f"no validated backup at or before {as_of.isoformat()} of any source: nothing to recover"
        )
    return operation


def approval_text(operation: RecoveryOperation) -> str:
    steps = "; ".join(f"{s.label}: {s.overwrites}" for s in operation.steps)
    return (
        f"recovery {operation.operation_id} of {len(operation.steps)} source(s) as of "
        f"{operation.as_of.isoformat(timespec='seconds')} into the originals ({steps})"
    )


# -- running -----------------------------------------------------------------------------------
def run_step(
    settings: BackstopSettings, store: BackupStore, step: RecoveryStep, as_of: datetime, exact: bool = True
) -> None:
    """Restore one step's restore point, then run its checks; the step's status says how it went."""
    step.status, step.started_at, step.error, step.checks = "running", utcnow(), "", []
    began = time.monotonic()
    request = _request(step, exact)
    point = step_point(step, as_of) if step.parts else None
    try:
        report = restore.restore(step.component, settings, request, store=store, point=point)
        step.restore = report.summary()
        step.checks.append(component_check(step.component, report.problems))
        step.checks += user_checks(settings, step.component, step.source, step.target or step.source)
    except ValidationFailed as exc:
        step.error = str(exc)[:2000]
        step.checks.append(component_check(step.component, exc.problems or [str(exc)]))
    except Exception as exc:  # any failure stops the operation with its cause recorded
        step.error = f"{type(exc).__name__}: {exc}"[:2000]
    failed = [f"{c.name} ({c.detail})" if c.detail else c.name for c in step.checks if not c.passed]
    if failed and not step.error:
        step.error = f"check(s) failed: {'; '.join(failed)}"[:2000]
    step.status = "failed" if step.error else "succeeded"
    step.seconds = time.monotonic() - began


def recover(
    settings: BackstopSettings,
    as_of: str | datetime | None = None,
    components: list[str] | None = None,
    sources: list[str] | None = None,
    target_suffix: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
    reason: str = "",
    resume: str | None = None,
    who: str = "",
    store: BackupStore | None = None,
    notify: Notify | None = None,
    log: Callable[[str], None] | None = None,
    keep_newer: bool = False,
) -> RecoveryOperation:
    """Plan (and unless `dry_run`, run) a platform recovery as of `as_of`, or resume one.

    Each source is brought to its state at T: what appeared after T in the recovered scope is
    deleted (listed as deletes in the plan, covered by the one approval) unless `keep_newer`.

    Returns the operation as recorded; a failed operation is returned with outcome "failed" (the
    caller decides how to fail). Refusals before anything is written (no approval, bad input)
    raise.
    """
    store = store or open_store(settings)
    say = log or (lambda _: None)
    if resume:
        operation = load_operation(store, resume)
        if operation.outcome == "succeeded":
            say(f"operation {resume} already succeeded: nothing to resume")
            return operation
        if operation.outcome == "planned":
            raise InvalidInput(f"operation {resume} was a dry run: start a recovery instead")
        operation.resumed += 1
    else:
        if as_of is None:
            raise InvalidInput("give the recovery time (--as-of) or an operation to resume (--resume)")
        moment = datetime.now(UTC) if as_of == "now" else parse_time(as_of)
        if target_suffix is not None:
            check_suffix(target_suffix)
        operation = plan_operation(
            settings, store, moment, components, sources, target_suffix, who, reason, exact=not keep_newer
        )
    if dry_run and not resume:
        save_operation(store, operation)
        return operation
    if not resume:
        refuse_partial(store, operation)
    if operation.into_original:
        try:
            granted = require_approval(approval_text(operation), yes=yes)
        except Conflict as exc:  # the refusal is part of the record; nothing was written
            operation.outcome, operation.message, operation.finished_at = "failed", str(exc), utcnow()
            save_operation(store, operation)
            raise
        operation.approval = granted if not resume else f"{operation.approval}; resumed: {granted}"
    operation.outcome, operation.message, operation.finished_at = "running", "", None
    save_operation(store, operation)
    _announce(notify, operation, "started", say)
    first = operation.first_incomplete()
    remaining = [] if first is None else operation.steps[first:]
    approval = f"covered by the approval of operation {operation.operation_id}: {operation.approval}"
    with covered_by(approval) if operation.into_original else contextlib.nullcontext():
        for number, step in enumerate(remaining, 1):
            say(f"step {step.label}: restoring {step.backup_id} into {step.target or 'the original'}")
            report(f"recover {operation.operation_id}", number - 1, len(remaining), unit="steps")
            run_step(settings, store, step, operation.as_of, operation.exact)
            save_operation(store, operation)
            report(f"recover {operation.operation_id}", number, len(remaining), unit="steps")
            if step.status == "failed":
                break
    failed = [s for s in operation.steps if s.status != "succeeded"]
    operation.outcome = "failed" if failed else "succeeded"
    operation.finished_at = utcnow()
    operation.message = "\n".join(summary_lines(operation))
    save_operation(store, operation)
    _announce(notify, operation, operation.outcome, say)
    return operation


def refuse_partial(store: BackupStore, operation: RecoveryOperation) -> None:
    """A source whose restore point lacks a part is not recovered half: the operation fails before
    anything is written, naming the parts and T (the record keeps the refusal)."""
    partial = [p for p in operation.plan if p.missing_parts]
    if not partial:
        return
    where = "; ".join(f"{p.component}/{p.source}: part {', '.join(p.missing_parts)}" for p in partial)
    operation.outcome, operation.finished_at = "failed", utcnow()
    operation.message = (
        f"no validated backup at or before {operation.as_of.isoformat(timespec='seconds')} of {where}: "
        "nothing restored (back those parts up, or leave the source out with --source / --component)"
    )
    save_operation(store, operation)
    raise NotFound(operation.message)


def check_suffix(suffix: str) -> str:
    """A target suffix: lowercase letters, digits and dashes (it becomes part of bucket and dataset names)."""
    if not suffix or len(suffix) > 20 or not all(c.isdigit() or c.islower() or c == "-" for c in suffix):
        raise InvalidInput(f"target suffix {suffix!r}: use up to 20 lowercase letters, digits and dashes")
    return suffix


def _announce(
    notify: Notify | None, operation: RecoveryOperation, what: str, say: Callable[[str], None]
) -> None:
    """A message at the start and the end; a notification that fails never fails the recovery."""
    point = operation.recovery_point
    subject = f"Backstop recovery {operation.operation_id} {what}"
    body = "\n".join(
        [
            f"Recovery of {len(operation.steps)} source(s) as of {operation.as_of.isoformat(timespec='seconds')} {what}.",
            f"Recovery point: {point.isoformat(timespec='seconds') if point else '-'}.",
            f"Run by {operation.who}" + (f" because: {operation.reason}" if operation.reason else "."),
        ]
        + (summary_lines(operation)[2:] if what in ("succeeded", "failed") else [])
    )
    say(f"{subject}: {body}")
    if notify is None:
        return
    try:
        notify(subject, body)
    except Exception as exc:
        say(f"notification failed: {type(exc).__name__}: {exc}")
