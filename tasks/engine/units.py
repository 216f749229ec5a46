"""Running a lifecycle's steps and the units of every long step (a backup's copies, a restore's
copies, validation's read-back, the secondary copy, prune's sweep): as Prefect tasks inside a flow
run (the units on the task runner the settings choose: the flow's threads or a Dask cluster), as
plain calls outside one (tests, scripts). Units in flight follow the runner: UNIT_WORKERS on
threads, twice the cluster's threads on Dask. `run_units` runs a backup's units, `fan_out` any
step's (a restore's copies), `UnitBatches` the batches of a step that streams its per-object work
(validation's read-back, the secondary copy, prune's deletes) as units of `fan_out`.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import as_completed as futures_completed
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import as_completed
from prefect.utilities.annotations import quote

from backstop.core.manifest import BackupManifest, ManifestEntry, utcnow
from tasks.engine.progress import report
from tasks.engine.protocol import Context, get_component
from tasks.engine.runners import unit_runner
from tasks.storage.parallel import Batches, growing

UNIT_WORKERS = 8  # units at once on threads (the copies share this process's copy workers)
R = TypeVar("R")


def in_flow() -> bool:
    return FlowRunContext.get() is not None


def spreads(ctx: Context) -> bool:
    """Whether a step's units run in other processes (a Dask cluster, inside a flow run): their
    work then travels as work files, and their writes take one rate limit shared on the Prefect
    server (tasks/storage/shared_limit.py) instead of one per process."""
    return ctx.settings.task_runner == "dask" and in_flow()


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
    """Run a backup's units as the runner allows (see `fan_out`), taking the next from `units` as
    one finishes: a plan that streams its units (Cloud Storage) never has more than a few batches
    in memory, and no unit waits for a slower one. `done(entries, state)` as each finishes (so a
    failure later still knows what the finished units made), with `progress(done, started)`."""

    what = f"backup {component.name}/{manifest.source}"
    stored = 0

    def call(unit: Any) -> Any:
        return component.run_unit(ctx, manifest, unit)

    def finished(result: Any) -> None:
        nonlocal stored
        done(*result)
        stored += sum(e.size for e in result[0]) if isinstance(result[0], list) else 0

    def progressed(number: int, started: int) -> None:
        report(what, number, started, stored)  # watchers of this process (tasks/engine/progress.py)
        if progress:
            progress(number, started)

    def submit_task(run: Any, label: str, unit: Any) -> Any:
        parameters = {"label": label, "component": component.name, "ctx": ctx}
        return run(_unit_task, parameters | {"manifest": manifest, "unit": quote(unit)})

    _drive(
        ctx, f"{component.name}-{manifest.source}-unit", f"{component.name} backup of {manifest.source}",
        call, submit_task, units, finished, progressed,
    )  # fmt: skip


@task(name="unit", task_run_name="{label}", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def _work_task(label: str, fn: Callable[[Context, Any], Any], ctx: Context, ref: Any) -> Any:
    return fn(ctx, ref)


def fan_out(
    ctx: Context,
    label: str,
    fn: Callable[[Context, Any], R],
    refs: Iterable[Any],
    done: Callable[[R], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """`fn(ctx, ref)` for every ref, on the same runner as a backup's units: inside a flow run one
    Prefect task per ref on the flow's threads or the Dask cluster the settings name, else on
    threads here. `fn` must be a module-level function (it travels to the worker by name) and a ref
    a few bytes (a work file's key, never the object list). As many refs run at once as the runner
    has room for (a Dask cluster: twice its threads, so a worker always has the next one queued);
    refs are taken lazily, `done(result)` as each finishes; the first error stops the rest."""

    def submit_task(run: Any, unit_label: str, ref: Any) -> Any:
        return run(_work_task, {"label": unit_label, "fn": fn, "ctx": ctx, "ref": quote(ref)})

    _drive(ctx, label, label, lambda ref: fn(ctx, ref), submit_task, refs, done or (lambda _: None), progress)


def _drive(
    ctx: Context,
    label: str,
    describe: str,
    call: Callable[[Any], Any],
    submit_task: Callable[[Any, str, Any], Any],
    units: Iterable[Any],
    done: Callable[[Any], None],
    progress: Callable[[int, int], None] | None,
) -> None:
    pending = iter(units)
    first = next(pending, _END)
    if first is _END:  # nothing to do: no task run, no cluster started
        return
    units = itertools.chain([first], pending)
    if not in_flow():
        if UNIT_WORKERS <= 1:  # one after another, in this thread
            for number, unit in enumerate(units, 1):
                done(call(unit))
                if progress:
                    progress(number, number)
            return
        with ThreadPoolExecutor(max_workers=UNIT_WORKERS) as pool:
            for number, started, result in _bounded(
                lambda _, unit: pool.submit(call, unit), units, futures_completed, UNIT_WORKERS
            ):
                done(result)
                if progress:
                    progress(number, started)
        return
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact: Any = create_progress_artifact(0.0, description=describe)
    with unit_runner(ctx.settings, UNIT_WORKERS) as runner:  # the flow's threads, or a Dask cluster
        run = _from_flow(runner)
        in_flight = UNIT_WORKERS if ctx.settings.task_runner != "dask" else 2 * runner.capacity()
        log(ctx, f"{describe}: up to {in_flight} units at once on the {ctx.settings.task_runner} runner")
        completed = as_completed if ctx.settings.task_runner != "dask" else finished_of
        for number, started, result in _bounded(
            lambda n, unit: submit_task(run, f"{label}-{n}", unit), units, completed, in_flight
        ):
            done(result)
            log(ctx, f"{describe}: unit {number} done ({started} started so far)")
            update_progress_artifact(artifact, 100.0 * number / started)
            if progress:
                progress(number, started)


def _from_flow(run: Any) -> Callable[[Any, dict[str, Any]], Any]:
    """Submit as from the flow run itself, also when called inside a task run (a restore's write
    step): the units are the flow run's tasks, and what travels to a Dask worker is the unit's own
    parameters, not the calling task's (a restore plan with its spools on this machine)."""

    def submit(task_: Any, parameters: dict[str, Any]) -> Any:
        def outside() -> Any:
            TaskRunContext.__var__.set(None)  # type: ignore[arg-type]
            return run(task_, parameters)

        return contextvars.copy_context().run(outside)

    return submit


def finished_of(futures: list[Any]) -> Iterator[Any]:
    """The Dask runner's `futures` as they finish, found by asking each whether it is done (every
    10 ms, backing off to 200 ms), not by Dask's done callbacks, which Prefect's `as_completed`
    waits on: they run one at a time on one thread of the process, and were seen to come seconds
    after a unit had finished (Dask said done, the flow run waited on), and one never to come (the
    flow run waited for good on a unit its worker had finished)."""
    pending = list(futures)
    wait = 0.01
    while pending:
        done = [f for f in pending if f.wrapped_future.done()]
        for future in done:
            pending.remove(future)
            yield future
        if not done:
            time.sleep(wait)
            wait = min(0.2, 2 * wait)
        else:
            wait = 0.01


def _bounded(
    submit: Callable[[int, Any], Any],
    units: Iterable[Any],
    completed: Callable[[list[Any]], Iterator[Any]],
    limit: int,
) -> Iterator[tuple[int, int, Any]]:
    """(units finished, units started, result) as each finishes, with at most `limit` running.

    A unit's failure is raised once the others running have finished and been yielded (no more start).
    """
    pending = iter(units)
    running: list[Any] = []
    started = finished = 0
    more = True
    while True:
        while more and len(running) < limit:
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


# -- the batches of a long step as units -------------------------------------------------------
WORK_PREFIX = "_resume/units/"  # under _resume/: not a component's folder (tasks/catalog/index.py)
STALE = timedelta(hours=24)  # work files a run that died left behind: removed by the next run


@dataclass(frozen=True)
class Batch:
    """One unit of a step's batches: `fn` and its items, in memory (`items`) or in the work file
    `key` of the backup bucket (a unit on another process gets a few bytes, never the item list)."""

    fn: Callable[[list[Any]], Any]
    key: str
    count: int
    items: list[Any] | None = None


def run_batch(ctx: Context, batch: Batch) -> Any:
    """A unit of `UnitBatches`: `batch.fn` over its items (read from its work file if it has one)."""
    items = batch.items if batch.items is not None else json.loads(ctx.store.get_bytes(batch.key))
    return batch.fn(items)


class UnitBatches(Batches):
    """`Batches` (tasks/storage/parallel.py) run as units on the settings' task runner inside a flow
    run (`fan_out`), here one after another outside one (tests, scripts: as before).

    On the flow's threads a batch is handed over in memory; on a Dask cluster it is first written
    to a work file `_resume/units/<step>/<run>/work-<n>.json` in `ctx.store` (a worker gets its key),
    removed when the step ends, failed or not; what a run that died left there is removed by the
    next run of the step once a day old (best effort: a bucket retention policy may keep it)."""

    def __init__(self, ctx: Context, step: str, label: str) -> None:
        self.ctx, self.step, self.label = ctx, step, label
        self.spread = spreads(ctx)

    def run(self, fn: Callable[[list[Any]], R], items: Iterable[Any], done: Callable[[R], None]) -> None:
        if not in_flow():
            super().run(fn, items, done)
            return
        store, run = self.ctx.store, uuid.uuid4().hex[:12]
        written: list[str] = []

        def batches() -> Iterator[Batch]:
            for number, batch in enumerate(growing(items, self.first), 1):
                if not self.spread:  # threads of this process: nothing travels
                    yield Batch(fn, "", len(batch), batch)
                    continue
                if not written:
                    forget_stale(store, self.step)
                key = f"{WORK_PREFIX}{self.step}/{run}/work-{number:06d}.json"
                store.put_bytes(key, json.dumps(batch).encode(), content_type="application/json")
                written.append(key)
                yield Batch(fn, key, len(batch))

        try:
            fan_out(self.ctx, self.label, run_batch, batches(), done)
        finally:
            if written:
                store.delete_objects(written)


def forget_stale(store: Any, step: str) -> None:
    """Remove work files of `step` older than STALE (left by a run that died)."""
    old = utcnow() - STALE
    stale = [
        k for k, b in store.list(f"{WORK_PREFIX}{step}/").items() if b.time_created and b.time_created < old
    ]
    if stale:
        store.delete_objects(stale)


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
