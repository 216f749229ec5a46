"""The platform drill: `recover --as-of now` into scratch targets, timed against a platform RTO.

The monthly drill restores each source on its own; this one restores them all as one operation,
the way an incident would (tasks/operations/recover.py), so it measures the platform's recovery time: from
the start to the last check passed. The objective is the longest RTO of the components recovered
(the operations plan gives each one; they are restored one after another, so that is the
tightest objective a whole-platform recovery can be held to without a platform objective of its
own). Every scratch target is removed afterwards, also after a failure; what could not be removed
is named.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from blocks.settings import BackstopSettings
from tasks.engine.protocol import get_component
from tasks.operations.recover import Notify, recover
from tasks.storage.bucket import BackupStore, open_store


def platform_rto_minutes(settings: BackstopSettings, components: list[str]) -> float:
    """The objective of a whole-platform recovery: the longest RTO of the components in it."""
    return max((settings.objectives_for(c).rto_minutes for c in components), default=60.0)


def platform_drill(
    settings: BackstopSettings,
    components: list[str] | None = None,
    store: BackupStore | None = None,
    notify: Notify | None = None,
    log: Callable[[str], None] | None = None,
    who: str = "",
) -> dict[str, Any]:
    """Recover every source into scratch targets as of now, time it, clean up; a dict says how it went."""
    store = store or open_store(settings)
    suffix = f"p{datetime.now(UTC):%d%H%M%S}"
    began = time.monotonic()
    operation = recover(
        settings,
        "now",
        components,
        target_suffix=suffix,
        reason="platform drill",
        who=who,
        store=store,
        notify=notify,
        log=log,
    )
    seconds = time.monotonic() - began
    problems = [f"{s.label}: {s.error}" for s in operation.steps if s.status == "failed"]
    cleaned_up = True
    for step in operation.steps:
        if step.target is None:
            continue
        try:
            get_component(step.component).remove_target(settings, step.target)
        except Exception as exc:  # keep going: every scratch target gets its chance
            cleaned_up = False
            problems.append(f"scratch target {step.target} was not removed: {exc}")
    rto_minutes = platform_rto_minutes(settings, sorted({s.component for s in operation.steps}))
    over_rto = seconds > rto_minutes * 60
    if over_rto:
        problems.append(f"platform recovery took {seconds:.1f} s, over the RTO of {rto_minutes:g} min")
    return {
        "operation_id": operation.operation_id,
        "steps": len(operation.steps),
        "outcome": operation.outcome,
        "seconds": round(seconds, 2),
        "rto_minutes": rto_minutes,
        "passed": operation.outcome == "succeeded" and not over_rto and cleaned_up,
        "cleaned_up": cleaned_up,
        "recovery_point": operation.recovery_point.isoformat(timespec="seconds")
        if operation.recovery_point
        else None,
        "problems": problems,
        "targets": [s.target for s in operation.steps],
    }
