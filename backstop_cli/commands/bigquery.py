"""`backstop restore-as-of`: BigQuery time travel into another dataset, without a backup."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.core.names import check_dataset, check_table, parse_time
from backstop.core.report import fields_table, text_table
from backstop_cli.main import emit


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = verbs.add_parser(
        "restore-as-of",
        help="copy BigQuery tables as of a time (time travel, no backup) into another dataset",
    )
    p.add_argument("--source", "--dataset", dest="source", required=True, help="the source dataset")
    p.add_argument("--as-of", required=True, help="ISO time inside the time-travel window")
    p.add_argument("--target", help="target dataset (default <dataset>_restored_<time>; never the source)")
    p.add_argument(
        "--only", "--table", dest="only", action="append", help="only this table or view (repeatable)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace non-empty tables in the target")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore_as_of)


def restore_as_of(args: argparse.Namespace) -> int:
    from flows.bigquery import restore_bigquery_as_of

    check_dataset(args.source)
    if args.target:
        check_dataset(args.target)
    tables = [check_table(t) for t in args.only or []]
    summary = restore_bigquery_as_of(
        args.source,
        str(parse_time(args.as_of).isoformat()),
        args.target or "",
        tables,
        args.overwrite,
        args.dry_run,
        args.settings,
    )
    actions = summary.pop("actions", [])
    emit(args, summary | {"actions": actions}, fields_table(summary) + "\n\n" + text_table(actions))
    return 0
