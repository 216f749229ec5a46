"""Running a lifecycle's steps and a backup's units: as Prefect tasks inside a flow run (the units on
the task runner the settings choose: the flow's threads or a Dask cluster), as plain calls
outside one (tests, scripts), UNIT_WORKERS units at a time either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import as_completed as futures_completed
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.utilities.annotations import quote

from backstop.core.manifest import BackupManifest, ManifestEntry
from tasks.engine.progress import report
from tasks.engine.protocol import Context, get_component
from tasks.engine.runners import unit_runner

UNIT_WORKERS = 8


def in_flow() -> bool:
    return FlowRunContext.get() is not None


@task(name="step", task_run_name="{label}", cache_policy=NO_CACHE)
def _step_task(label: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(*args)


def step(label: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)`: as a Prefect task named `label` inside a flow run, else as a plain call."""
    if in_flow():
        return _step_task(label, fn, quote(args))
    return fn(*args)


@task(name="backup-unit", task_run_name="{label}", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def _unit_task(label: str, component: str, ctx: Context, manifest: BackupManifest, unit: Any) -> Any:
    return get_component(component).run_unit(ctx, manifest, unit)


def log(ctx: Context, message: str) -> None:
    if in_flow():
        from prefect import get_run_logger

        get_run_logger().info("%s", message)
    ctx.info(message)


def run_units(
    component: Any,
    ctx: Context,
    manifest: BackupManifest,
    units: Iterable[Any],
    done: Callable[[list[ManifestEntry], dict[str, Any]], None],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run the units, UNIT_WORKERS at a time, taking the next from `units` as one finishes: a plan
    that streams its units (Cloud Storage) never has more than a few batches in memory, and no
    unit waits for a slower one. `done(entries, state)` as each finishes (so a failure later still
    knows what the finished units made), with a log line and `progress(done, started)` per unit;
    watchers of this process (tasks/engine/progress.py) hear of units and bytes as they finish."""
    what = f"backup {component.name}/{manifest.source}"
    stored = 0

    def finished(number: int, started: int, result: Any) -> None:
        nonlocal stored
        done(*result)
        stored += sum(e.size for e in result[0]) if isinstance(result[0], list) else 0
        report(what, number, started, stored)
        if progress:
            progress(number, started)

    if not in_flow():
        if UNIT_WORKERS <= 1:  # one after another, in this thread
            for number, unit in enumerate(units, 1):
                finished(number, number, component.run_unit(ctx, manifest, unit))
            return
        with ThreadPoolExecutor(max_workers=UNIT_WORKERS) as pool:

            def submit(number: int, unit: Any) -> Any:
                return pool.submit(component.run_unit, ctx, manifest, unit)

            for number, started, result in _bounded(submit, units, futures_completed):
                finished(number, started, result)
        return
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact: Any = create_progress_artifact(0.0, description=f"{component.name} backup of {manifest.source}")
    label = f"{component.name}-{manifest.source}-unit"
    with unit_runner(ctx.settings) as run:  # the flow's threads, or a Dask cluster (tasks/engine/runners.py)

        def submit_task(number: int, unit: Any) -> Any:
            parameters = {"label": f"{label}-{number}", "component": component.name, "ctx": ctx}
            return run(_unit_task, parameters | {"manifest": manifest, "unit": quote(unit)})

        for number, started, result in _bounded(submit_task, units, as_completed):
            finished(number, started, result)
            log(ctx, f"{component.name}/{manifest.source}: unit {number} done ({started} started so far)")
            update_progress_artifact(artifact, 100.0 * number / started)


def _bounded(
    submit: Callable[[int, Any], Any], units: Iterable[Any], completed: Callable[[list[Any]], Iterator[Any]]
) -> Iterator[tuple[int, int, Any]]:
    """(units finished, units started, result) as each finishes, with at most UNIT_WORKERS running.

    A unit's failure is raised once the others running have finished and been yielded (no more start).
    """
    pending = iter(units)
    running: list[Any] = []
    started = finished = 0
    more = True
    while True:
        while more and len(running) < UNIT_WORKERS:
            unit = next(pending, _END)
            if unit is _END:
                more = False
                break
            started += 1
            running.append(submit(started, unit))
        if not running:
            return
        first = next(completed(list(running)))
        running.remove(first)
        try:
            result = first.result()
        except BaseException as exc:
            # The units still running finish first and what they made is handed on, so that a
            # failed backup's discard knows of it (a snapshot table made by a unit in flight).
            for other in completed(list(running)):
                try:
                    more = other.result()
                except BaseException:
                    continue
                finished += 1
                yield finished, started, more
            raise exc
        finished += 1
        yield finished, started, result


_END = object()


def merge_state(state: dict[str, Any], more: dict[str, Any]) -> None:
    """Merge a unit's source state into the backup's: counts add up, dicts merge one level deep
    (per-unit details), anything else is replaced."""
    for key, value in more.items():
        old = state.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            state[key] = old | value
        elif type(old) is int and type(value) is int:
            state[key] = old + value
        else:
            state[key] = value
