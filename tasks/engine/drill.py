"""Restore drill records: write, list, summarise. The drill itself is tasks.engine.lifecycle.drill.

Every component is drilled by the same restore path as a user's restore. The scratch target is
removed in a `finally` (also when the restore or the verification fails), and every drill leaves a record in the catalog (`drills/...` in the backup bucket, see
backstop.core.objectives.DrillResult) that the health report reads.
"""

from __future__ import annotations

from collections.abc import Callable

from backstop.core.errors import ValidationFailed
from backstop.core.objectives import DRILL_PREFIX, DrillResult
from blocks.settings import BackstopSettings
from tasks.storage.bucket import BackupStore

__all__ = ["DrillResult", "drill_sources", "list_drills", "run_drill", "write_drill"]


def run_drill(
    settings: BackstopSettings,
    store: BackupStore,
    component_name: str,
    source: str,
    suffix: str | None = None,
    record: bool = True,
) -> DrillResult:
    """Drill one component / source through the lifecycle (tasks.engine.lifecycle.drill) and record it."""
    from tasks.engine.lifecycle import drill

    return drill(component_name, settings, source, suffix, store, record)


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
        for manifest in store.list_headers(component, on_damaged=lambda _: None):
            pairs.add((component, manifest.source))
    return sorted(pairs)


def drill_summary(results: list[DrillResult]) -> str:
    """One line per failed drill (empty when all passed)."""
    return "; ".join(
        f"{r.component}/{r.source}: {'; '.join(r.problems[:3]) or 'failed'}" for r in results if not r.passed
    )
