"""`backstop backup gcs` and `backstop restore gcs`."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.cli import add_yes, check_overwrite_approved, emit
from backstop.names import check_backup_id, check_bucket, check_percent, parse_time
from backstop.report import text_table


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = groups["backup"].add_parser("gcs", help="back up Cloud Storage buckets")
    p.add_argument(
        "--bucket", action="append", help="source bucket (repeatable; default: the settings' gcs_sources)"
    )
    p.add_argument("--prefix", action="append", help="only objects under this prefix (repeatable)")
    p.add_argument("--no-validate", action="store_true", help="skip validation after the backup")
    p.add_argument("--sample-percent", type=float, help="share of objects re-read by validation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backup)

    p = groups["restore"].add_parser("gcs", help="restore a bucket, a prefix or objects")
    p.add_argument("--bucket", required=True, help="the backed-up bucket")
    p.add_argument("--backup-id")
    p.add_argument("--before", help="latest validated backup at or before this ISO time")
    p.add_argument("--target", help="target bucket (default: the original bucket)")
    p.add_argument("--object", action="append", help="object name, or prefix ending in '/' (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace objects whose content differs")
    p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    add_yes(p)
    p.add_argument("--skip-damaged", action="store_true", help="restore what is intact of a damaged backup")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore)


def backup(args: argparse.Namespace) -> int:
    from flows.gcs import backup_gcs

    for bucket in args.bucket or []:
        check_bucket(bucket)
    if args.sample_percent is not None:
        check_percent(args.sample_percent, "--sample-percent")
    rows = backup_gcs(args.bucket, args.prefix, not args.no_validate, args.sample_percent, args.settings)
    emit(args, rows, text_table(rows))
    return 0


def restore(args: argparse.Namespace) -> int:
    from flows.gcs import restore_gcs

    check_bucket(args.bucket)
    if args.target:
        check_bucket(args.target)
    if args.backup_id:
        check_backup_id(args.backup_id)
    if args.before:
        parse_time(args.before)
    check_overwrite_approved(args, into_original=args.target in (None, "", args.bucket))
    summary = restore_gcs(
        args.bucket,
        args.backup_id,
        args.before,
        args.target,
        args.object,
        args.overwrite,
        args.dry_run,
        approved=args.yes,
        skip_damaged=args.skip_damaged,
        settings_block=args.settings,
    )
    emit(args, summary, text_table([summary]))
    return 0
