"""Restore drills: restore a restore point into a scratch target, verify, prove every part restored
something, time against the RTO, clean up, and the drill records (write, list, summarise).

Every component is drilled by the same restore path as a user's restore, on the latest restore
point (backstop/core/restore_points.py): every part of the source from its own newest backup, so
a part whose backups stopped (a DAG backup failing while metadata backups succeed) fails the drill. The scratch target is
removed in a `finally` (also when the restore or the verification fails), and every drill leaves a record in the catalog (`drills/...` in the backup bucket, see
backstop.core.objectives.DrillResult) that the health report reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from backstop.core.errors import BackstopError, NotFound, ValidationFailed
from backstop.core.objectives import DRILL_PREFIX, DrillResult, drill_verdict, new_drill_id, rto_problem
from backstop.core.report import joined
from backstop.core.restore_points import RestorePoint
from blocks.settings import BackstopSettings
from tasks.catalog import index, points
from tasks.engine import restore
from tasks.engine.protocol import RestoreRequest, get_component
from tasks.storage.bucket import BackupStore, open_store

__all__ = ["DrillResult", "drill", "drill_sources", "list_drills", "write_drill"]


def drill(
    component_name: str,
    settings: BackstopSettings,
    source: str,
    suffix: str | None = None,
    store: BackupStore | None = None,
    record: bool = True,
) -> DrillResult:
    """Restore the latest restore point of `source` (every part, each from its own backup) into a
    scratch target, verify it, check every part restored something, time it against the RTO, and
    always remove the scratch target. Failures are reported, not raised."""
    component = get_component(component_name)
    store = store or open_store(settings)
    started = datetime.now(UTC)
    drill_id = new_drill_id(started)
    result = DrillResult(
        drill_id=drill_id,
        component=component.name,
        source=source,
        started_at=started,
        rto_minutes=settings.objectives_for(component.name).rto_minutes,
        passed=False,
    )
    try:
        point = points.restore_point(store, component.name, source, component.parts)
        result.backup_id = ", ".join(point.backup_ids) or None
        if not point.backup_ids:
            raise NotFound(f"no validated backup of {component.name}/{source} in {store.where()}")
        newest = index.find(store, point.backup_ids[0])
        result.target = component.scratch_target(newest, suffix or drill_id.lower())
        into_scratch(component, settings, store, point, result)
    except ValidationFailed as exc:
        result.problems += exc.problems or [str(exc)]
    except BackstopError as exc:
        result.problems.append(str(exc))
    except Exception as exc:  # a drill reports a crashing restore as a failed drill, with its cause
        result.problems.append(f"{type(exc).__name__}: {exc}")
    result.passed, result.over_rto = drill_verdict(result.seconds, result.rto_minutes, result.problems)
    if result.over_rto:
        result.problems.append(rto_problem(result.seconds, result.rto_minutes))
    if record:
        write_drill(store, result)
    return result


def into_scratch(
    component: Any, settings: BackstopSettings, store: BackupStore, point: RestorePoint, result: DrillResult
) -> None:
    """Restore `point` into `result.target`, time it, say what each part restored, remove the target."""
    target = result.target
    assert target is not None
    began = time.perf_counter()
    try:
        report = restore.restore(
            component.name,
            settings,
            RestoreRequest(source=point.source, target=target),
            store=store,
            record=False,
            point=point,
        )
        result.seconds = time.perf_counter() - began
        result.restored = report.created + report.overwritten
        result.parts = report.parts
        result.problems += coverage_problems(report.parts)
    finally:
        try:
            component.remove_target(settings, target)
        except Exception as exc:  # keep the drill's own outcome; report the leftover
            result.cleaned_up = False
            result.problems.append(f"scratch target {target} was not removed: {exc}")


def coverage_problems(parts: dict[str, dict[str, Any]]) -> list[str]:
    """A part whose backup holds entries but of which the drill restored nothing proves nothing."""
    return [
        f"part {part} of backup {counts['backup_id']} holds {counts['entries']} entr"
        f"{'y' if counts['entries'] == 1 else 'ies'} but the drill restored none of them"
        for part, counts in parts.items()
        if counts.get("entries") and not counts.get("restored")
    ]


def write_drill(store: BackupStore, result: DrillResult) -> str:
    """Store a drill record in the catalog; returns its object name."""
    store.put_bytes(result.path, result.model_dump_json(indent=1).encode(), content_type="application/json")
    return result.path


def list_drills(
    store: BackupStore,
    component: str | None = None,
    source: str | None = None,
    on_damaged: Callable[[str], None] | None = None,
) -> list[DrillResult]:
    """Every drill record under the component / source prefix, newest first.

    A record that does not parse is reported through `on_damaged` (or raised as ValidationFailed).
    """
    prefix = DRILL_PREFIX + (
        "" if component is None else f"{component}/" + ("" if source is None else f"{source}/")
    )
    found = []
    for key in store.list(prefix):
        if not key.endswith(".json"):
            continue
        try:
            found.append(DrillResult.model_validate_json(store.get_bytes(key)))
        except ValueError as exc:
            message = f"{store.where(key)}: damaged drill record ({str(exc).splitlines()[0]})"
            if on_damaged is None:
                raise ValidationFailed(message) from None
            on_damaged(message)
    found = [d for d in found if source is None or d.source == source]
    return sorted(found, key=lambda d: (d.started_at, d.drill_id), reverse=True)


def drill_sources(store: BackupStore, components: list[str]) -> list[tuple[str, str]]:
    """(component, source) pairs that have at least one backup in the catalog."""
    pairs: set[tuple[str, str]] = set()
    for component in components:
        for manifest in index.read_headers(store, component, on_damaged=lambda _: None):
            pairs.add((component, manifest.source))
    return sorted(pairs)


def drill_summary(results: list[DrillResult]) -> str:
    """One line per failed drill (empty when all passed)."""
    return "; ".join(
        f"{r.component}/{r.source}: {joined(r.problems, 3) or 'failed'}" for r in results if not r.passed
    )
