"""The `backstop` command line: the local platform, backups, the catalog and restores.

User errors (BackstopError) print one line on stderr and exit 2, with no traceback. Every command
that prints data takes `--json`. Component verbs (`backup gcs`, `restore bigquery`, ...) live in
`backstop/commands/components.py`, made from the component registry.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backstop.errors import BackstopError, InvalidInput

COMMAND_MODULES = [
    "backstop.commands.core",
    "backstop.commands.components",
    "backstop.commands.bigquery",
    "backstop.commands.retention",
    "backstop.commands.ops",
    "backstop.commands.harden",
    "backstop.commands.recover",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises InvalidInput (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise InvalidInput(f"{self.prog}: {message}")


def state_dir() -> Path:
    return Path(os.environ.get("BACKSTOP_HOME", ".backstop")).resolve()


def load_platform_env() -> None:
    """Use the running local platform's endpoints unless the environment already names services."""
    from backstop.platform import LocalPlatform

    for key, value in LocalPlatform(state_dir()).env().items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON with --json, else `text`."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=1, default=str))
    else:
        print(text)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="backstop", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="default", help="name of the Backstop settings block")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's flow and task run logs")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=ArgumentParser)
    groups: dict[str, Any] = {}
    for verb in ("backup", "restore"):
        group = verbs.add_parser(verb, help=f"{verb} one component")
        groups[verb] = group.add_subparsers(dest="component", required=True, parser_class=ArgumentParser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # tests/unit/test_cli.py asserts every listed module exists
            if exc.name != name:
                raise
            continue
        module.register(verbs, groups)
    return parser


def quiet_prefect_console(argv: Sequence[str]) -> None:
    """Keep Prefect's own log lines and tracebacks off the terminal unless -v is given.

    The flow runs still log to the Prefect API (the UI shows every line); the CLI prints its
    result table, or one `error:` line. Must run before Prefect configures logging.
    """
    if "-v" not in argv and "--verbose" not in argv:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_prefect_console(argv)
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "no_platform_env", False):
            load_platform_env()
        return int(args.handler(args) or 0)
    except BackstopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
