"""`backstop backup configs` and `backstop restore configs`."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.cli import add_yes, check_overwrite_approved, emit
from backstop.errors import InvalidInput
from backstop.names import check_backup_id, check_source_name, parse_time
from backstop.report import text_table


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = groups["backup"].add_parser(
        "configs", help="back up configuration files (directories, gs:// prefixes)"
    )
    p.add_argument("--source", action="append", help="configured source name (repeatable; default: all)")
    p.add_argument("--path", help="ad hoc local directory or gs://bucket/prefix to back up instead")
    p.add_argument("--name", help="catalog name for --path (default: adhoc)")
    p.add_argument("--no-validate", action="store_true", help="skip validation after the backup")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backup)

    p = groups["restore"].add_parser("configs", help="restore configuration files, one file or a pattern")
    p.add_argument("--source", required=True, help="the backed-up source name")
    p.add_argument("--backup-id")
    p.add_argument("--before", help="latest validated backup at or before this ISO time")
    p.add_argument("--target", help="directory or gs://bucket/prefix (default: where the files came from)")
    p.add_argument(
        "--file", action="append", help="path or glob pattern, e.g. 'pipelines/*.yaml' (repeatable)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace files whose content differs")
    add_yes(p)
    p.add_argument(
        "--dry-run", action="store_true", help="show what would change (with diffs), change nothing"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore)


def backup(args: argparse.Namespace) -> int:
    from flows.configs import backup_configs

    if args.path and args.source:
        raise InvalidInput("give either --source or --path, not both")
    if args.name and not args.path:
        raise InvalidInput("--name names an ad hoc --path")
    for name in (args.source or []) + ([args.name] if args.name else []):
        check_source_name(name)
    rows = backup_configs(args.source, args.path, args.name, not args.no_validate, args.settings)
    emit(args, rows, text_table(rows))
    return 0


def restore(args: argparse.Namespace) -> int:
    from flows.configs import restore_configs

    check_overwrite_approved(args, into_original=args.target in (None, "", args.source))

    check_source_name(args.source)
    if args.backup_id:
        check_backup_id(args.backup_id)
    if args.before:
        parse_time(args.before)
    summary = restore_configs(
        args.source,
        args.backup_id,
        args.before,
        args.target,
        args.file,
        args.overwrite,
        args.dry_run,
        args.settings,
        approved=args.yes,
    )
    actions = summary.get("actions", [])
    shown = [a for a in actions if a["action"] != "unchanged"] or actions
    text = [text_table([{k: v for k, v in summary.items() if k not in ("actions", "conflicted")}]), ""]
    text.append(text_table([{"path": a["path"], "action": a["action"], "size": a["size"]} for a in shown]))
    text += [a["diff"] for a in shown if a.get("diff")]
    emit(args, summary, "\n".join(text))
    return 0
