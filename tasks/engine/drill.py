"""Restore drills: restore into a scratch target, verify, time against the RTO, clean up, and
the drill records (write, list, summarise).

Every component is drilled by the same restore path as a user's restore. The scratch target is
removed in a `finally` (also when the restore or the verification fails), and every drill leaves a record in the catalog (`drills/...` in the backup bucket, see
backstop.core.objectives.DrillResult) that the health report reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from backstop.core.errors import BackstopError, ValidationFailed
from backstop.core.objectives import DRILL_PREFIX, DrillResult, drill_verdict, new_drill_id, rto_problem
from backstop.core.report import joined
from blocks.settings import BackstopSettings
from tasks.catalog import backups as catalog
from tasks.catalog import index
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
    """Restore the newest validated backup of `source` into a scratch target, verify it, time it
    against the RTO, and always remove the scratch target. Failures are reported, not raised."""
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
            report = restore.restore(
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
