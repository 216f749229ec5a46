"""`backstop harden`: uniform access, no public access, soft delete and a retention policy on the backup buckets."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.core.report import text_table
from backstop_cli.main import emit


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = verbs.add_parser(
        "harden",
        help="uniform access, public access prevention, soft delete and a retention policy on the backup buckets",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.add_argument(
        "--lock-retention",
        action="store_true",
        help="also lock the retention policy (IRREVERSIBLE; needs --yes)",
    )
    p.add_argument("--yes", action="store_true", help="confirm the irreversible --lock-retention")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=harden)


def harden(args: argparse.Namespace) -> int:
    from backstop.core.errors import Conflict
    from flows.harden import LOCK_WARNING, harden_backup_buckets

    if args.lock_retention and not args.yes and not args.dry_run:
        raise Conflict(f"--lock-retention: {LOCK_WARNING}; add --yes to lock")
    result = harden_backup_buckets(args.dry_run, args.lock_retention, args.yes, args.settings)
    text = text_table(result["changes"], ["bucket", "setting", "before", "after", "changed"])
    emit(args, result, text + "\n" + "\n".join(result["notes"]))
    return 0
