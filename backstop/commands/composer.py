"""`backstop backup composer` and `backstop restore composer`."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.cli import add_yes, check_overwrite_approved, emit
from backstop.names import check_backup_id, check_percent, parse_time
from backstop.report import text_table

PARTS = ["dags", "metadata", "config"]


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = groups["backup"].add_parser("composer", help="back up Cloud Composer environments")
    p.add_argument(
        "--environment", action="append", help="environment name (repeatable; default: the settings')"
    )
    p.add_argument(
        "--part", action="append", choices=PARTS, help="part to back up (repeatable; default: all)"
    )
    p.add_argument("--snapshot", action="store_true", default=None, help="also save a Composer snapshot")
    p.add_argument("--no-validate", action="store_true", help="skip validation after the backup")
    p.add_argument("--sample-percent", type=float, help="share of stored objects re-read by validation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backup)

    p = groups["restore"].add_parser(
        "composer", help="restore DAGs, Airflow metadata, config diff or snapshot"
    )
    p.add_argument("--environment", required=True, help="the backed-up environment")
    p.add_argument("--backup-id")
    p.add_argument("--before", help="latest validated backup at or before this ISO time")
    p.add_argument("--target-environment", help="restore into this environment (default: the original)")
    p.add_argument(
        "--part", action="append", choices=[*PARTS, "snapshot"], help="part to restore (repeatable)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace DAG files whose content differs")
    add_yes(p)
    p.add_argument(
        "--delete-extra", action="store_true", help="delete variables/connections/pools not in the backup"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore)


def backup(args: argparse.Namespace) -> int:
    from flows.composer import backup_composer

    if args.sample_percent is not None:
        check_percent(args.sample_percent, "--sample-percent")
    rows = backup_composer(
        args.environment, args.part, args.snapshot, not args.no_validate, args.sample_percent, args.settings
    )
    emit(args, rows, text_table(rows))
    return 0


def restore(args: argparse.Namespace) -> int:
    from flows.composer import restore_composer

    check_overwrite_approved(args, into_original=args.target_environment in (None, "", args.environment))

    if args.backup_id:
        check_backup_id(args.backup_id)
    if args.before:
        parse_time(args.before)
    report = restore_composer(
        args.environment,
        args.backup_id,
        args.before,
        args.target_environment,
        args.part,
        args.overwrite,
        args.dry_run,
        args.delete_extra,
        args.settings,
        approved=args.yes,
    )
    actions = report.pop("actions")
    changed = [a for a in actions if a.get("action") not in ("unchanged",)]
    columns = ["kind", "name", "field", "action", "backup", "current", "note"]
    text = text_table([report]) + ("\n\n" + text_table(changed, columns) if changed else "")
    emit(args, report | {"actions": actions}, text)
    return 0
