"""`backstop backup <component>` and `backstop restore <component>`, made from the component registry.

Every component gets the same flags: `--source` (also spelt after what a source is: `--bucket`,
`--dataset`, ...), `--target`, `--backup-id`, `--before`, `--only` (also spelt after what a part
is: `--object`, `--table`, `--file`, `--part`, `--namespace`), `--overwrite`, `--dry-run`,
`--yes`, `--skip-damaged`, and one flag per field of the component's options model. A new
component needs nothing here.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import typing
from typing import Any

from pydantic import BaseModel

from backstop.core.errors import Conflict
from backstop.core.names import check_backup_id, check_percent, parse_time
from backstop.core.report import text_table
from backstop_cli.main import emit

ACTION_COLUMNS = ("name", "change", "why")


def _flag(name: str, info: Any) -> str:
    extra = info.json_schema_extra or {}
    return "--" + str(extra.get("flag", name)).replace("_", "-")


def _verbs(info: Any) -> tuple[str, ...]:
    extra = info.json_schema_extra or {}
    return tuple(extra.get("verbs", ("backup", "restore")))


def _choices(annotation: Any) -> list[str] | None:
    for arg in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(arg) is typing.Literal:
            return [str(a) for a in typing.get_args(arg)]
        inner = _choices(arg) if typing.get_args(arg) else None
        if inner:
            return inner
    return None


def _kind(annotation: Any) -> str:
    """'bool', 'list', 'dict', 'scalar' or 'model' (models are not command-line options)."""
    text = str(annotation)
    if annotation is bool or text in ("bool", "bool | None"):
        return "bool"
    if "dict[" in text:
        return "dict"
    if "list[" in text:
        return "list"
    args = typing.get_args(annotation)
    if any(isinstance(a, type) and issubclass(a, BaseModel) for a in args) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return "model"
    return "scalar"


def add_options(parser: argparse.ArgumentParser, model: type[BaseModel], verb: str) -> None:
    for name, info in model.model_fields.items():
        kind = _kind(info.annotation)
        if kind == "model" or verb not in _verbs(info):
            continue
        flag, help_ = _flag(name, info), info.description
        if kind == "bool":
            parser.add_argument(flag, dest=f"opt_{name}", action="store_true", default=None, help=help_)
        elif kind in ("list", "dict"):
            parser.add_argument(flag, dest=f"opt_{name}", action="append", help=f"{help_} (repeatable)",
                                choices=_choices(info.annotation), metavar="KEY=VALUE" if kind == "dict" else None)  # fmt: skip
        else:
            parser.add_argument(flag, dest=f"opt_{name}", choices=_choices(info.annotation), help=help_)


def options_from(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any] | None:
    # KEY=VALUE lists are parsed by the options model
    found = {name: getattr(args, f"opt_{name}", None) for name in model.model_fields}
    return {k: v for k, v in found.items() if v is not None} or None


def register(verbs: Any, groups: dict[str, Any]) -> None:
    from tasks.engine.protocol import COMPONENTS, get_component

    for name in COMPONENTS:
        component = get_component(name)
        noun, part = component.noun, component.part
        p = groups["backup"].add_parser(
            name, help=f"back up {name} {noun}s (default: those the settings schedule)"
        )
        p.add_argument(
            "--source", f"--{noun}", dest="sources", action="append", help=f"{noun} to back up (repeatable)"
        )
        p.add_argument("--no-validate", action="store_true", help="skip validation after the backup")
        p.add_argument("--sample-percent", type=float, help="share of stored objects validation re-reads")
        add_options(p, component.Options, "backup")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=backup, component=name)

        p = groups["restore"].add_parser(name, help=f"restore a {name} {noun}, or {part}s of it")
        p.add_argument("--source", f"--{noun}", dest="source", required=True, help=f"the backed-up {noun}")
        p.add_argument("--target", help=f"where to restore (default: the original {noun})")
        p.add_argument("--backup-id", help="the backup to restore (default: the latest validated one)")
        p.add_argument("--before", help="the latest validated backup at or before this ISO time")
        p.add_argument(
            "--only", f"--{part}", dest="only", action="append", help=f"restore only this {part} (repeatable)"
        )
        p.add_argument(
            "--overwrite", action="store_true", help="replace or delete existing data that differs"
        )
        p.add_argument(
            "--exact",
            action="store_true",
            help="also delete what the target holds in the restored scope that the backup does not "
            "(added after it; needs --overwrite)",
        )
        p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
        p.add_argument("--yes", action="store_true", help="approve changing data in the original location")
        p.add_argument(
            "--skip-damaged", action="store_true", help="restore what is intact of a damaged backup"
        )
        add_options(p, component.Options, "restore")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=restore, component=name)


def _flow(component: str, verb: str) -> Any:
    flow = getattr(importlib.import_module(f"flows.{component}"), f"{verb}_{component}")
    return functools.partial(_without_heartbeat, flow)


def _without_heartbeat(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `flow` in this process with no flow-run heartbeat. Its thread sleeps in 1 s steps and
    is joined when the run ends: up to a second added to every command. Heartbeats let the server
    tell that a run on a worker died (deployments keep them); a CLI run is watched by the user at
    the terminal, and one that fails or is interrupted is marked so by Prefect's engine anyway."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow(*args, **kwargs)


def backup(args: argparse.Namespace) -> int:
    from tasks.engine.protocol import get_component, options_for

    component = get_component(args.component)
    if args.sample_percent is not None:
        check_percent(args.sample_percent, "--sample-percent")
    options = options_for(component, options_from(args, component.Options))
    flow = _flow(args.component, "backup")
    rows = flow(args.sources, options, not args.no_validate, args.sample_percent, args.settings)
    emit(args, rows, text_table(rows))
    return 0


def restore(args: argparse.Namespace) -> int:
    from tasks.engine.approval import cli_approval
    from tasks.engine.protocol import get_component, options_for

    component = get_component(args.component)
    if args.overwrite and not args.dry_run and not args.yes and args.target in (None, "", args.source):
        raise Conflict(
            "--overwrite into the original location needs --yes (see what changes with --dry-run first)"
        )
    if args.backup_id:
        check_backup_id(args.backup_id)
    if args.before:
        parse_time(args.before)
    options = options_for(component, options_from(args, component.Options))
    flow = _flow(args.component, "restore")
    with cli_approval(args.yes):
        summary = flow(
            source=args.source,
            target=args.target,
            backup_id=args.backup_id,
            before=args.before,
            only=args.only,
            overwrite=args.overwrite,
            dry_run=args.dry_run,
            skip_damaged=args.skip_damaged,
            options=options,
            settings_block=args.settings,
            exact=args.exact,
        )
    actions = summary.get("actions", [])
    shown = [a for a in actions if a.get("change") != "unchanged"] or actions
    text = [text_table([{k: v for k, v in summary.items() if k not in ("actions", "conflicted", "parts")}])]
    parts = summary.get("parts") or {}
    if len(parts) > 1 or any(p != "all" for p in parts):  # which backup each part came from
        text += ["", text_table([{"part": p} | c for p, c in parts.items()])]
    if shown:
        text += ["", text_table([{c: a.get(c, "") for c in ACTION_COLUMNS} for a in shown[:200]])]
    text += [a["diff"] for a in shown if a.get("diff")]
    emit(args, summary, "\n".join(text))
    return 0
