"""The `backstop` command line: the local platform, backups, the catalog and restores.

User errors (BackstopError) print one line on stderr and exit 2, with no traceback; a command that
answered for what is reachable while a service is down (`health`, `list`) names it and exits 3; so does a
platform that is not running (`error: Prefect server not reachable at URL: start it with `backstop up``),
and Prefect never starts a temporary server of its own. Every command that prints data takes `--json`.
Component verbs (`backup gcs`, `restore bigquery`, ...) live in `backstop_cli/commands/components.py`,
made from the component registry.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backstop.core.errors import BackstopError, Conflict, InvalidInput, Unavailable
from backstop_cli import words
from backstop_cli.home import state_dir

COMMAND_MODULES = [
    "backstop_cli.commands.core",
    "backstop_cli.commands.components",
    "backstop_cli.commands.bigquery",
    "backstop_cli.commands.retention",
    "backstop_cli.commands.ops",
    "backstop_cli.commands.harden",
    "backstop_cli.commands.platform",
    "backstop_cli.commands.settings",
    "backstop_cli.commands.recover",
]


# Every command module imports neither Prefect nor pandas at import time (they do in their
# handlers), and the component verbs load only the component named: the parser is built in a
# fraction of a second, so `backstop --help` or a mistyped verb answers at once.


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises InvalidInput (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise InvalidInput(f"{self.prog}: {message}")


def load_platform_env(fresh: bool = False) -> None:
    """Use the running local platform's endpoints unless the environment already names services.
    `fresh`: in a process where Prefect is imported but has not read them yet (a warm command)."""
    try:
        from localdev.platform import LocalPlatform
    except ModuleNotFoundError:  # a production install: no local platform to point at
        return
    platform = LocalPlatform(state_dir())
    # a service that died keeps its address, so that a command names it as not reachable (rather
    # than a client falling back to Google's own endpoint)
    dead = {k: v for info in platform.gone().values() for k, v in info.get("endpoints", {}).items()}
    for key, value in (dead | platform.env()).items():
        if key != "PREFECT_UI_URL":
            os.environ.setdefault(key, value)
    prefect_defaults(fresh)


def prefect_defaults(fresh: bool = False) -> None:
    """No telemetry, no temporary Prefect server, and Prefect's home (profiles, flow results) under the
    platform's home rather than the user's. Prefect reads these when it is imported, so they are set
    only in a process that has not imported it yet (the CLI; not a test calling main()), or where
    its settings are read again (`fresh`: a warm command)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if fresh or "prefect" not in sys.modules:
        home = Path(os.environ.setdefault("PREFECT_HOME", str(state_dir() / "prefect")))
        home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(home / "storage"))
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")


def _prefect_api_url() -> str | None:
    url = os.environ.get("PREFECT_API_URL")
    if url or "prefect" not in sys.modules:
        return url
    from prefect.settings import PREFECT_API_URL  # a test harness sets it without the environment

    return PREFECT_API_URL.value() or None


CATALOG_SERVICES = ("PREFECT_API_URL", "STORAGE_EMULATOR_HOST")  # the settings and the backup bucket


def unreachable_services(include_unset: bool = False) -> list[dict[str, Any]]:
    """Every service the CLI is pointed at that does not accept a connection: its label, address and
    the components it serves. `include_unset`: an unset PREFECT_API_URL counts as the local
    platform's default address (after a command failed; before, it may not need Prefect at all)."""
    from blocks.clients import EMULATOR_COMPONENTS, EMULATOR_ENV
    from localdev.platform import configured_ports, endpoint_port, reachable

    api = _prefect_api_url()
    if not api and include_unset:
        api = f"http://127.0.0.1:{configured_ports()['prefect']}/api"
    checks = [("PREFECT_API_URL", "Prefect server", api)] if api else []
    checks += [(key, label, os.environ[key]) for key, label in EMULATOR_ENV.items() if os.environ.get(key)]
    down = []
    for key, label, url in checks:
        where = endpoint_port(url)
        if where is None or not reachable(*where):
            components = list(EMULATOR_COMPONENTS.get(key, ()))
            down.append({"key": key, "service": label, "url": url, "components": components})
    return down


def unreachable(include_unset: bool, needs: Any = "all") -> str | None:
    """'<service> not reachable at <url>: ...' for the first service the command needs that does not
    accept a connection, else None. `needs`: "all", "catalog" (Prefect and the backup bucket's
    storage) or a component's name (Prefect and the services of that component)."""
    for service in unreachable_services(include_unset):
        wanted = needs == "all" or service["key"] in CATALOG_SERVICES or needs in service["components"]
        if wanted:
            return f"{service['service']} not reachable at {service['url']}: start it with `backstop up`"
    return None


def unreachable_rows(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per component a down service serves: what a command that answered for the rest names."""
    return [
        {"component": c, "problem": f"{s['service']} not reachable at {s['url']}"}
        for s in services
        for c in s["components"]
    ]


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON with --json, else `text`."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=1, default=str))
    else:
        print(text)


def build_parser(modules: Sequence[str] = COMMAND_MODULES, argv: Sequence[str] = ()) -> ArgumentParser:
    """The whole command line; `argv` (the words given) lets the component verbs load only the
    component they name."""
    parser = ArgumentParser(prog="backstop", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="default", help="name of the Backstop settings block")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's flow and task run logs")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=ArgumentParser)
    groups: dict[str, Any] = {}
    for verb in ("backup", "restore"):
        group = verbs.add_parser(verb, help=f"{verb} one component")
        groups[verb] = group.add_subparsers(dest="component", required=True, parser_class=ArgumentParser)
    given = words.without_settings(argv)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # tests/cli/test_cli.py asserts every listed module exists
            if exc.name not in (name, "localdev"):  # the local platform's verbs need localdev
                raise
            continue
        if "argv" in inspect.signature(module.register).parameters:
            module.register(verbs, groups, argv=given)
        else:
            module.register(verbs, groups)
    return parser


def quiet_prefect_console(argv: Sequence[str]) -> None:
    """Keep Prefect's own log lines and tracebacks off the terminal unless -v is given.

    The flow runs still log to the Prefect API (the UI shows every line); the CLI prints its
    result table, or one `error:` line. Must run before Prefect configures logging.
    """
    if "-v" not in argv and "--verbose" not in argv:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        # Prefect's background senders log "Still processing items..." on their own loggers (named
        # after their class) while they drain at exit; the items are still sent.
        for name in ("EventsWorker", "APILogWorker"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _active_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub)parser the words of `argv` select: `backup gcs --bucjet` -> the `backup gcs` parser."""
    current = parser
    for word in argv:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction) and word in action.choices:
                current = action.choices[word]
                break
    return current


def suggest(parser: argparse.ArgumentParser, argv: Sequence[str], message: str) -> str:
    """`message` plus '(did you mean --x?)' for a mistyped flag or verb."""
    active = _active_parser(parser, argv)
    if "unrecognized arguments:" in message:
        flags = [o for a in active._actions for o in a.option_strings if o.startswith("--")]
        for word in message.split("unrecognized arguments:", 1)[1].split():
            if word.startswith("-"):
                close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.6)
                if close:
                    return f"{message} (did you mean {close[0]}?)"
    choice = re.search(r"invalid choice: '([^']*)'", message)
    if choice:
        words = [
            str(w) for a in active._actions if isinstance(a, argparse._SubParsersAction) for w in a.choices
        ]
        close = difflib.get_close_matches(choice.group(1), words, n=1, cutoff=0.6)
        if close:
            return f"{message} (did you mean {close[0]}?)"
    return message


def _quiet_broken_pipe() -> int:
    """The reader went away (`backstop list | head -1`): stop quietly, and keep Python from complaining
    about the unflushed rest at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`, a supervisor stopping the command): the command unwinds as on
    Ctrl-C (a backup in flight is recorded as abandoned, its temporary files are removed) and exits
    143, where Python's default would end the process on the spot."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def unwind_on_sigterm() -> None:
    """SIGTERM raises Terminated in this process (the `backstop` script and a warm command's child,
    not `main()` called in a test's process)."""
    signal.signal(signal.SIGTERM, _terminated)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        os.getcwd()
    except FileNotFoundError:  # everything relative (the platform's home) would fail with a traceback
        print("error: the current folder no longer exists: cd to one that does", file=sys.stderr)
        return 2
    quiet_prefect_console(argv)
    # Before the parser of a component verb, which imports Prefect (the component's options model):
    # Prefect reads its settings when imported, so the platform's endpoints must be in the
    # environment by then. Other verbs are parsed first: help and typos answer at once.
    if words.verb(argv) in ("backup", "restore"):
        load_platform_env()
    try:
        parser = build_parser(argv=argv)
        try:
            args = parser.parse_args(argv)
        except InvalidInput as exc:
            raise InvalidInput(suggest(parser, argv, str(exc))) from None
        if getattr(args, "no_platform_env", False):
            prefect_defaults()
            code = int(args.handler(args) or 0)
        else:
            load_platform_env()
            check = getattr(args, "platform_check", True)
            code = _run_on_platform(args) if check else int(args.handler(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except BackstopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM in the `backstop` script (Terminated)
        terminated = isinstance(exc, Terminated)
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        return 143 if terminated else 130


def _run_on_platform(args: argparse.Namespace) -> int:
    """Run a command that needs Prefect and the services: a service the command needs that does not
    answer is one error line before anything runs (a command that reads only the catalog answers
    for what is reachable: `args.unreachable` names a row per component it cannot reach); a failure
    while a needed service (or Prefect's default address) does not answer is reported as that
    service not running (input errors are reported as they are)."""
    needs = getattr(args, "needs", "all")
    down = unreachable(include_unset=False, needs=needs)
    if down:
        raise Unavailable(down)
    if needs == "catalog":  # it answers for what is reachable and names the rest (exit 3)
        args.unreachable = unreachable_rows(unreachable_services())
    try:
        return int(args.handler(args) or 0)
    except (InvalidInput, Conflict, BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception as exc:
        down = unreachable(include_unset=True, needs=needs)
        if down:
            raise Unavailable(down) from exc
        if not _prefect_api_url():  # another home's platform holds the default port: not ours
            raise Unavailable(
                f"no Prefect server: PREFECT_API_URL is not set and no local platform runs from {state_dir()}: "
                "start it with `backstop up` there (or set PREFECT_API_URL)"
            ) from exc
        raise


if __name__ == "__main__":
    sys.exit(main())
