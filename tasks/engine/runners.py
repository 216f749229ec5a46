"""The task runner the units of every long step run on, as the settings choose (`task_runner`).

- "threads" (default): the flow run's own task runner, a thread pool on the machine running the flow.
- "dask": prefect-dask's `DaskTaskRunner`, so one step spreads over the workers of a Dask cluster:
  the cluster at `dask_address`, or else a `LocalCluster` of `dask_workers` processes started when a
  step first has units, shared by the steps of the flow run that run at once, stopped after them.

What a unit task gets (the settings, the backup store, the manifest, the unit) is pickled to the
worker; the store reopens its client there (tasks/storage/bucket.py), so the workers need the same
environment as the flow run: emulator endpoints, credentials, PREFECT_API_URL (deployments/README.md).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect.context import FlowRunContext
from prefect.utilities.annotations import quote

from backstop.core.errors import Unavailable
from blocks.settings import BackstopSettings


def dask_runner(address: str) -> Any:
    """A (not yet connected) DaskTaskRunner for the cluster whose scheduler is at `address`."""
    from prefect_dask.task_runners import DaskTaskRunner

    return DaskTaskRunner(address=address)


_shared_lock = threading.Lock()
_shared: dict[str, Any] = {}  # this process's LocalCluster ("cluster") and the steps using it ("users")


@contextmanager
def local_cluster(settings: BackstopSettings) -> Iterator[str]:
    """The scheduler address of this process's LocalCluster of `dask_workers` processes: started by
    the first step that has units for it, shared by the steps running at once (prune's sources,
    the secondary copies of several backups), shut down when the last of them is done."""
    from distributed import LocalCluster

    with _shared_lock:  # a second step waits for the first one's cluster instead of starting its own
        if not _shared:
            # No dashboard (it needs bokeh); a LocalCluster's scheduler and workers listen on loopback only.
            _shared["cluster"] = LocalCluster(
                n_workers=settings.dask_workers, processes=True, dashboard_address=None
            )
            _shared["users"] = 0
        _shared["users"] += 1
        cluster = _shared["cluster"]
    try:
        yield cluster.scheduler_address
    finally:
        with _shared_lock:
            _shared["users"] -= 1
            if _shared["users"] == 0:
                _shared.clear()
                cluster.close()


def _connect(runner: Any, settings: BackstopSettings) -> None:
    """Connect on the first unit (so a backup with nothing to copy starts no cluster); a scheduler
    that cannot be reached is an Unavailable error naming it, not a traceback."""
    try:
        runner.client  # noqa: B018 (the property connects, or starts the local cluster, once)
    except OSError as exc:
        where = f"at {settings.dask_address} (settings dask_address)" if settings.dask_address else "(local)"
        raise Unavailable(f"Dask cluster {where} not reachable: {exc}") from exc


def _unquoted(parameters: dict[str, Any]) -> dict[str, Any]:
    """Dask rebuilds tuples it is given, so Prefect's `quote` annotation (a tuple) would reach the
    task as a plain 1-tuple (a known prefect-dask limitation): pass the values themselves."""
    return {k: v.unquote() if isinstance(v, quote) else v for k, v in parameters.items()}


class Submitter:
    """`submit(task, parameters) -> PrefectFuture` on the chosen runner, and its `capacity()`:
    how many units it runs at once (a Dask cluster: its workers' threads, summed)."""

    def __init__(self, submit: Callable[[Any, dict[str, Any]], Any], capacity: Callable[[], int]) -> None:
        self.submit = submit
        self.capacity = capacity

    def __call__(self, task: Any, parameters: dict[str, Any]) -> Any:
        return self.submit(task, parameters)


def dask_threads(client: Any) -> int:
    """The threads of every worker of a Dask cluster, summed (at least 1)."""
    return max(1, sum(client.nthreads().values()))


@contextmanager
def unit_runner(settings: BackstopSettings, local_capacity: int = 8) -> Iterator[Submitter]:
    """A `Submitter` for units (backup, restore, validation, secondary copy, prune), inside a flow run.

    "threads": the flow run's own task runner (started and stopped by the flow run), `local_capacity`
    units at once; "dask": a DaskTaskRunner on the cluster at `dask_address` (else this process's
    `local_cluster`), connected on the first submit (or capacity asked) and closed on exit, as many
    units at once as the cluster has threads. Entered only for a step that has units (units.py).
    """
    if settings.task_runner == "dask":
        with contextlib.ExitStack() as stack:
            address = settings.dask_address or stack.enter_context(local_cluster(settings))
            runner = stack.enter_context(dask_runner(address))

            def submit(task: Any, parameters: dict[str, Any]) -> Any:
                _connect(runner, settings)
                return runner.submit(task, _unquoted(parameters))

            def capacity() -> int:
                _connect(runner, settings)
                return dask_threads(runner.client)

            yield Submitter(submit, capacity)
        return
    flow_run = FlowRunContext.get()
    if flow_run is None or flow_run.task_runner is None:
        raise RuntimeError("units are submitted to a task runner only inside a flow run")
    yield Submitter(flow_run.task_runner.submit, lambda: local_capacity)
