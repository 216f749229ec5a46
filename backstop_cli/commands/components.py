"""`backstop backup <component>` and `backstop restore <component>`, made from the component registry.

Every component gets the same flags: `--source` (also spelt after what a source is: `--bucket`,
`--dataset`, ...), `--target`, `--backup-id`, `--before`, `--only` (also spelt after what a part
is: `--object`, `--table`, `--file`, `--part`, `--namespace`), `--overwrite`, `--dry-run`,
`--yes`, `--skip-damaged`, and one flag per field of the component's options model. A new
component needs nothing here.
"""

from __future__ import annotations

import argparse
import contextlib
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backstop.core.errors import Conflict, InvalidInput, NotFound
from backstop.core.names import check_percent
from backstop.core.report import fields_table, left_out, summarized, table_and_details, text_table
from backstop_cli.main import emit

if TYPE_CHECKING:
    from pydantic import BaseModel

ACTION_COLUMNS = ("name", "change", "why")
# What every backup reports; a component's own counts follow the table, a line a backup.
BACKUP_COLUMNS = ("status", "component", "source", "size", "started_utc", "seconds", "entries", "backup_id")
MAX_ROWS = 200  # action rows in the table (--json has them all)


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
    from pydantic import BaseModel

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


def register(verbs: Any, groups: dict[str, Any], argv: Sequence[str] = ()) -> None:
    """A `backup <name>` and a `restore <name>` parser per registered component. Only the component
    `argv` names is imported (its flags come from its options model); the others are listed by name,
    so `backstop --help` or `backstop backup gcs` never loads every component."""
    from tasks.engine.registry import COMPONENTS

    named = [w for w in argv if not w.startswith("-")]
    for name in COMPONENTS:
        if named[1:2] == [name] and named[0] in ("backup", "restore"):
            _register_component(groups, name)
        else:
            groups["backup"].add_parser(name, help=f"back up {name} (default: what the settings schedule)")
            groups["restore"].add_parser(name, help=f"restore a {name} backup, or parts of it")


def _register_component(groups: dict[str, Any], name: str) -> None:
    from tasks.engine.registry import component_face

    noun, part, options = component_face(name)  # light: a typo is answered before Prefect loads
    p = groups["backup"].add_parser(
        name, help=f"back up {name} {noun}s (default: those the settings schedule)"
    )
    p.add_argument(
        "--source", f"--{noun}", dest="sources", action="append", metavar=noun.upper(),
        help=f"{noun} to back up (repeatable)",
    )  # fmt: skip
    p.add_argument("--no-validate", action="store_true", help="skip validation after the backup")
    p.add_argument("--sample-percent", type=float, help="share of stored objects validation re-reads")
    add_options(p, options, "backup")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backup, component=name, needs=name)

    p = groups["restore"].add_parser(name, help=f"restore a {name} {noun}, or {part}s of it")
    p.add_argument(
        "--source",
        f"--{noun}",
        dest="source",
        required=True,
        metavar=noun.upper(),
        help=f"the backed-up {noun}",
    )
    p.add_argument("--target", help=f"where to restore (default: the original {noun})")
    p.add_argument("--backup-id", help="the backup to restore (default: the latest validated one)")
    p.add_argument("--before", help="the latest validated backup at or before this ISO time")
    p.add_argument(
        "--only", f"--{part}", dest="only", action="append", metavar=part.upper(),
        help=f"restore only this {part} (repeatable)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace or delete existing data that differs")
    p.add_argument(
        "--exact",
        action="store_true",
        help="also delete what the target holds in the restored scope that the backup does not "
        "(added after it; needs --overwrite)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    p.add_argument("--yes", action="store_true", help="approve changing data in the original location")
    p.add_argument("--skip-damaged", action="store_true", help="restore what is intact of a damaged backup")
    add_options(p, options, "restore")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore, component=name, needs=name)


def backup(args: argparse.Namespace) -> int:
    from backstop_cli.progress import terminal_progress
    from flows.components import component_flow
    from tasks.engine.protocol import get_component, options_for

    component = get_component(args.component)
    if args.sample_percent is not None:
        check_percent(args.sample_percent, "--sample-percent")
    options = options_for(component, options_from(args, component.Options))
    backup_flow = component_flow(args.component, "backup")
    with terminal_progress(args):
        rows = backup_flow(
            args.sources or [], options, not args.no_validate, args.sample_percent or 0, args.settings
        )
    emit(args, rows, table_and_details(rows, BACKUP_COLUMNS, "source"))
    return 0


def refuse_early(component: Any, args: argparse.Namespace) -> tuple[Any, contextlib.ExitStack]:
    """The restore request, built once and refused before a flow run starts where the CLI can tell:
    malformed names and options, overwriting the original without --yes, a backup of another source.

    With it, what these checks read (the settings, the backup's manifest), for the flow run in this
    process to take instead of reading it again (enter it around the flow's call)."""
    from blocks.settings import load_settings, loaded_already
    from tasks.catalog import index
    from tasks.engine.protocol import RestoreRequest, options_for
    from tasks.engine.restore import checked_request
    from tasks.storage.bucket import open_store

    if args.overwrite and not args.dry_run and not args.yes and args.target in (None, "", args.source):
        raise Conflict(
            "--overwrite into the original location needs --yes (see what changes with --dry-run first)"
        )
    asked = RestoreRequest(
        args.source, args.target, args.backup_id, args.before, args.only, args.overwrite, args.dry_run,
        args.skip_damaged, options_from(args, component.Options), args.exact,
    )  # fmt: skip
    asked.options = options_for(component, asked.options)  # malformed options need no settings to refuse
    settings = load_settings(args.settings)
    request = checked_request(component, settings, asked)
    read = contextlib.ExitStack()
    read.enter_context(loaded_already(args.settings, settings))
    if not request.backup_id:
        return request, read
    store = open_store(settings)
    try:
        found = index.find(store, request.backup_id)
    except NotFound:
        return request, read  # perhaps only in the secondary copy: the restore itself looks there
    except BaseException:
        read.close()
        raise
    if (found.component, found.source) != (component.name, request.source):
        read.close()
        raise InvalidInput(
            f"backup {found.backup_id} is a backup of {found.component} {found.source!r}, not of "
            f"{component.name} {request.source!r}: nothing restored"
        )
    read.enter_context(index.found_already(store, found))
    return request, read


def restore(args: argparse.Namespace) -> int:
    from backstop.core.restore_points import part_rows
    from backstop_cli.progress import terminal_progress
    from flows.components import component_flow, flow_parameters
    from tasks.engine.approval import cli_approval
    from tasks.engine.protocol import get_component

    component = get_component(args.component)
    request, already_read = refuse_early(component, args)
    with already_read, cli_approval(args.yes), terminal_progress(args):
        restore_flow = component_flow(args.component, "restore")
        summary = restore_flow(**flow_parameters(request), settings_block=args.settings)
    actions = summary.get("actions", [])
    changed = [a for a in actions if a.get("change") != "unchanged"] or actions
    shown = summarized(changed, MAX_ROWS)  # a long list of creates never cuts off what must be read
    shown_fields = {
        k: v for k, v in summary.items() if k not in ("actions", "conflicted", "parts") and v != ""
    }
    text = [fields_table(shown_fields)]
    rows = part_rows(summary.get("parts") or {})  # which backup each part came from
    if rows:
        text += ["", text_table([r | {"backup_time": _utc(r.get("backup_time"))} for r in rows])]
    if shown:
        text += ["", text_table([{c: a.get(c, "") for c in ACTION_COLUMNS} for a in shown[:MAX_ROWS]])]
        cut = left_out(min(len(shown), MAX_ROWS), len(shown), "--json lists every action")
        if not cut and len(shown) < len(changed):
            cut = f"{len(changed):,} actions, by folder: --json lists each"
        text += [cut] if cut else []
    text += [a["diff"] for a in shown if a.get("diff")]
    emit(args, summary, "\n".join(text))
    return 0


def _utc(iso: str | None) -> str:
    """'2026-12-07 12:57:21' for a row a person reads (the JSON keeps the full ISO time)."""
    from datetime import UTC, datetime

    return f"{datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M:%S}" if iso else ""
