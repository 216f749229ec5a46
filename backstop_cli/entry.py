"""The `backstop` console script: the command in this home's warm process when one runs
(backstop_cli/warm.py), else `backstop_cli.main.main` here, ending quickly (backstop_cli/ending.py).
Imports nothing but the standard library before main's module."""

from __future__ import annotations

import sys

from backstop_cli import ending
from backstop_cli.warm import run_warm


def run() -> None:
    argv = sys.argv[1:]
    code = run_warm(argv)
    if code is not None:
        sys.exit(code)
    ending.install_exit()
    ending.run_main(argv)


if __name__ == "__main__":
    run()
