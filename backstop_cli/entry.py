"""The `backstop` console script: `backstop_cli.main.main`, then a quick exit.

After a command, the interpreter's own teardown (freeing every module of Prefect, pandas, the Google
clients and gRPC, one object at a time) takes ~0.6 s of CPU that serves nothing: the process ends
anyway. So the exit skips it: a handler registered here, before anything else is imported, runs
last of all the exit handlers (they run in reverse order of registration), after Python has waited
for the threads that are not daemons and after every other handler (Prefect draining its events and
its API logs, logging's flush), then flushes stdout and stderr and ends the process with the
command's exit code. Only this script does so: `main()` called in a process of its own (tests) exits
as usual. Imports nothing but the standard library before main's module.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

_code: list[int] = [1]  # the exit code, 1 until main returns (an uncaught error)


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(_code[0])


def _as_code(value: object) -> int:
    """The exit code SystemExit(value) gives: None is 0, an int itself, anything else (a message) 1."""
    if value is None:
        return 0
    return value if isinstance(value, int) else 1


def run() -> None:
    atexit.register(_exit_now)
    from backstop_cli.main import main

    try:
        _code[0] = _as_code(main())
    except SystemExit as exc:  # argparse's --help, a handler's sys.exit
        _code[0] = _as_code(exc.code)
        raise
    sys.exit(_code[0])


if __name__ == "__main__":
    run()
