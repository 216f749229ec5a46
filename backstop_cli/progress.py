"""A live progress line on the terminal for long commands (backup, restore, recover, drill), drawn by rich.

On a terminal (stderr a TTY) and without --json, each operation reported through
tasks/engine/progress.py gets a line: items done of the total, bytes done, rate and time left; it
disappears when the command ends, leaving the result table. Piped or with --json, nothing is drawn.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from backstop.core.report import human_bytes


def wanted(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and sys.stderr.isatty() and sys.stdout.isatty()


@contextlib.contextmanager
def terminal_progress(args: argparse.Namespace) -> Iterator[None]:
    """Draw a progress line per operation while the block runs (only on a terminal, without --json)."""
    if not wanted(args):
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tasks.engine.progress import Progress as Report
    from tasks.engine.progress import watching

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}  {task.fields[bytes]}"),
        TimeRemainingColumn(),
    )
    started: dict[str, float] = {}
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        shown: dict[str, Any] = {}

        def watch(report: Report) -> None:
            if report.what not in shown:
                started[report.what] = time.monotonic()
                shown[report.what] = bar.add_task(report.what, total=report.total, unit="", bytes="")
            elapsed = max(time.monotonic() - started[report.what], 1e-3)
            size = (
                f"{human_bytes(report.bytes_done)} at {human_bytes(report.bytes_done / elapsed)}/s"
                if report.bytes_done
                else ""
            )
            bar.update(
                shown[report.what], completed=report.done, total=report.total, unit=report.unit, bytes=size
            )

        with watching(watch):
            yield
