"""`backstop backup bigquery` and `backstop restore bigquery`."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.cli import add_yes, check_overwrite_approved, emit
from backstop.errors import InvalidInput
from backstop.names import check_backup_id, check_dataset, check_table, parse_time
from backstop.report import text_table


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = groups["backup"].add_parser("bigquery", help="back up BigQuery datasets to Parquet or Avro")
    p.add_argument("--dataset", action="append", required=True, help="dataset id (repeatable)")
    p.add_argument("--table", action="append", help="only this table or view (repeatable)")
    p.add_argument(
        "--method",
        choices=["read", "extract", "snapshot"],
        help="read: Parquet via the Storage Read API; extract: extract jobs; snapshot: native table"
        " snapshots (default: the settings' bigquery_method)",
    )
    p.add_argument(
        "--format",
        choices=["parquet", "avro"],
        help="table data format of method read (default: the settings' bigquery_format, else parquet)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backup)

    p = groups["restore"].add_parser("bigquery", help="restore a dataset, tables or only the schema")
    p.add_argument("--dataset", required=True, help="the backed-up dataset")
    p.add_argument("--backup-id")
    p.add_argument("--before", help="latest validated backup at or before this ISO time")
    p.add_argument(
        "--as-of",
        help="no backup: copy the tables as of this ISO time with BigQuery time travel (needs --target or"
        " makes <dataset>_restored_<time>)",
    )
    p.add_argument("--target", help="target dataset (default: the original; created if missing)")
    p.add_argument("--table", action="append", help="only this table or view (repeatable)")
    p.add_argument("--schema-only", action="store_true", help="recreate tables and views without data")
    p.add_argument("--overwrite", action="store_true", help="replace non-empty tables")
    add_yes(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore)


def backup(args: argparse.Namespace) -> int:
    from flows.bigquery import backup_bigquery

    datasets = [check_dataset(d) for d in args.dataset]
    tables = [check_table(t) for t in args.table] if args.table else None
    rows = backup_bigquery(datasets, tables, args.settings, args.method, args.format)
    emit(args, rows, text_table(rows))
    return 0


def restore(args: argparse.Namespace) -> int:
    from flows.bigquery import restore_bigquery

    check_overwrite_approved(args, into_original=args.target in (None, "", args.dataset))

    check_dataset(args.dataset)
    if args.target:
        check_dataset(args.target)
    if sum(bool(x) for x in (args.backup_id, args.before, args.as_of)) > 1:
        raise InvalidInput("give one of --backup-id, --before or --as-of")
    if args.backup_id:
        check_backup_id(args.backup_id)
    if args.before:
        parse_time(args.before)
    tables = [check_table(t) for t in args.table] if args.table else None
    if args.as_of:
        from flows.bigquery import restore_bigquery_as_of

        if args.schema_only:
            raise InvalidInput("--schema-only restores from a backup; it does not combine with --as-of")
        summary = restore_bigquery_as_of(
            args.dataset,
            str(parse_time(args.as_of).isoformat()),
            args.target,
            tables,
            args.overwrite,
            args.dry_run,
            args.settings,
        )
    else:
        summary = restore_bigquery(
            args.dataset,
            args.backup_id,
            args.before,
            args.target,
            tables,
            args.schema_only,
            args.overwrite,
            args.dry_run,
            args.settings,
            approved=args.yes,
        )
    actions = summary.pop("actions", [])
    text = text_table([summary]) + "\n\n" + text_table([a for a in actions if "table" in a])
    emit(args, summary | {"actions": actions}, text)
    return 0
