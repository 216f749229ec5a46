"""How a command's process ends: with the command's exit code, quickly.

After a command, the interpreter's own teardown (freeing every module of Prefect, pandas, the Google
clients and gRPC, one object at a time) takes ~0.6 s of CPU that serves nothing: the process ends
anyway. So the exit skips it: a handler registered before anything else is imported (`install_exit`)
runs last of all the exit handlers (they run in reverse order of registration), after Python has
waited for the threads that are not daemons and after every other handler (Prefect draining its
events and its API logs, logging's flush), then flushes stdout and stderr, tells the reporters (a
warm command's child tells its command) and ends the process with the command's exit code. Only the
`backstop` script and the warm process do so: `main()` called in a process of its own (tests) exits
as usual. Imports nothing but the standard library before main's module.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable

_code: list[int] = [1]  # the exit code, 1 until main returns (an uncaught error)
_reporters: list[Callable[[int], None]] = []  # told the exit code last of all (a warm command's child)


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    for report in _reporters:
        with contextlib.suppress(OSError):
            report(_code[0])
    os._exit(_code[0])


def _as_code(value: object) -> int:
    """The exit code SystemExit(value) gives: None is 0, an int itself, anything else (a message) 1."""
    if value is None:
        return 0
    return value if isinstance(value, int) else 1


def install_exit() -> None:
    """End the process with the command's exit code after every other exit handler (see above)."""
    atexit.register(_exit_now)


def set_code(code: int) -> None:
    _code[0] = code


def set_reporter(report: Callable[[int], None]) -> None:
    _reporters.append(report)


def run_main(argv: list[str]) -> None:
    """`main(argv)`, then exit with its code (SystemExit)."""
    from backstop_cli.main import main, unwind_on_sigterm

    unwind_on_sigterm()
    try:
        _code[0] = _as_code(main(argv))
    except SystemExit as exc:  # argparse's --help, a handler's sys.exit
        _code[0] = _as_code(exc.code)
        raise
    sys.exit(_code[0])
