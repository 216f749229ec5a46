"""`backstop recover` (the whole platform as of a point in time) and `backstop restores` (the records)."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.core.errors import InvalidInput
from backstop.core.report import text_table
from backstop_cli.main import emit

RESTORE_COLUMNS = ("run_id", "component", "source", "outcome", "at", "backup_id", "message")


def register(verbs: Any, groups: dict[str, Any]) -> None:
    from tasks.engine.registry import COMPONENTS

    p = verbs.add_parser("recover", help="recover the whole platform (or components) as of a point in time")
    p.add_argument(
        "--as-of", help="ISO time (or 'now'): the newest validated backup at or before it, per source"
    )
    p.add_argument(
        "--component", action="append", choices=sorted(COMPONENTS), help="only this component (repeatable)"
    )
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument(
        "--target-suffix", help="restore into alternate targets named with this suffix, not the originals"
    )
    p.add_argument(
        "--keep-newer",
        action="store_true",
        help="keep what appeared after T (default: delete it, so each source is as it was at T)",
    )
    p.add_argument("--dry-run", action="store_true", help="record and show the plan, restore nothing")
    p.add_argument("--yes", action="store_true", help="approve overwriting the originals (the whole plan)")
    p.add_argument("--reason", default="", help="why: kept in the record and sent in the notifications")
    p.add_argument(
        "--resume", metavar="OPERATION_ID", help="continue a failed recovery from its first incomplete step"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=recover)

    p = verbs.add_parser("restores", help="recovery operations and restore records, newest first")
    p.add_argument("--limit", type=int, default=20, help="rows of each list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restores)


def recover(args: argparse.Namespace) -> int:
    """Run the recover-platform flow; print the plan, the steps and the outcome; exit 1 on a failure."""
    from backstop.core.names import parse_time
    from backstop.core.recovery import RecoveryOperation, plan_rows, summary_lines
    from backstop_cli.progress import terminal_progress
    from flows.recover import recover_platform
    from tasks.engine.approval import cli_approval, os_user

    if bool(args.as_of) == bool(args.resume):
        raise InvalidInput("give --as-of T for a new recovery or --resume OPERATION_ID, one of the two")
    if args.as_of and args.as_of != "now":
        parse_time(args.as_of)
    with cli_approval(args.yes), terminal_progress(args):
        result = recover_platform(
            as_of=args.as_of or "",
            components=args.component or [],
            sources=args.source or [],
            target_suffix=args.target_suffix or "",
            dry_run=args.dry_run,
            reason=args.reason or "",
            resume=args.resume or "",
            who=os_user(),
            fail_on_error=False,
            settings_block=args.settings,
            keep_newer=args.keep_newer,
        )
    operation = RecoveryOperation.model_validate(result)
    text = text_table(plan_rows(operation)) + "\n\n" + "\n".join(summary_lines(operation))
    emit(args, result, text)
    return 1 if operation.outcome == "failed" else 0


def restores(args: argparse.Namespace) -> int:
    from blocks.settings import load_settings
    from tasks.catalog.backups import list_runs
    from tasks.operations.recover import list_operations
    from tasks.storage.bucket import open_store

    if args.limit < 1:
        raise InvalidInput("--limit must be at least 1")
    store = open_store(load_settings(args.settings))
    operations = [o.row() for o in list_operations(store)[: args.limit]]
    runs = [r.row() for r in list_runs(store) if r.kind == "restore"][: args.limit]
    text = [
        "recovery operations:",
        text_table(operations) if operations else "none",
        "",
        "restore records:",
        text_table([{c: r.get(c) for c in RESTORE_COLUMNS} for r in runs]) if runs else "none",
    ]
    emit(args, {"operations": operations, "restores": runs}, "\n".join(text))
    return 0


def platform_drill(args: argparse.Namespace) -> int:
    """`backstop drill --platform`: print the drill's outcome and RTO; exit 1 when it failed."""
    from flows.recover import drill_platform
    from tasks.engine.approval import os_user

    result = drill_platform(
        args.component or [], os_user(), fail_on_error=False, settings_block=args.settings
    )
    shown = {k: v for k, v in result.items() if k not in ("problems", "targets")}
    text = [text_table([shown]), *[f"problem: {p}" for p in result["problems"]]]
    emit(args, result, "\n".join(text))
    return 0 if result["passed"] else 1
