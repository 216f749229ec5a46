"""Progress of a long operation, told to whoever watches in this process (the CLI's terminal line).

The engine and the operations call `report(...)` as work finishes (backup units, recovery steps,
drills, restore steps); a watcher (backstop_cli/progress.py draws a live line on a terminal) gets a
`Progress`. Nothing watches by default: flows run by a worker report to the Prefect UI's progress
artifact instead, and a watcher that fails never fails the work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """`done` of `total` items of `what` (total None: not known yet), and the bytes done."""

    what: str
    done: int
    total: int | None
    bytes_done: int = 0
    unit: str = "units"


Watcher = Callable[[Progress], None]
_WATCHERS: list[Watcher] = []


@contextlib.contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    """Tell `watcher` every progress report made while the block runs."""
    _WATCHERS.append(watcher)
    try:
        yield
    finally:
        _WATCHERS.remove(watcher)


def report(what: str, done: int, total: int | None, bytes_done: int = 0, unit: str = "units") -> None:
    for watcher in list(_WATCHERS):
        with contextlib.suppress(Exception):  # a progress line must never fail the work
            watcher(Progress(what, done, total, bytes_done, unit))
