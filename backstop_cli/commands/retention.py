"""`backstop prune`, `backstop preflight`, `backstop tiers` and `backstop copy-secondary`."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.core.names import check_source_name
from backstop.core.report import text_table
from backstop_cli.main import emit

PLAN_COLUMNS = ["bucket", "component", "source", "backup_id", "started", "status", "decision", "reason"]


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = verbs.add_parser("prune", help="apply the retention policy (keep / remove with reasons)")
    p.add_argument("--component", help="only this component (e.g. gcs)")
    p.add_argument("--source", help="only this source (needs --component)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, delete nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=prune)

    p = verbs.add_parser(
        "preflight", help="check the backup buckets' versioning, locks, KMS key and location"
    )
    p.add_argument(
        "--iam",
        action="store_true",
        help="also check each job's service account (deployments/iam/roles.yaml) with testIamPermissions",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=preflight)

    p = verbs.add_parser("tiers", help="put the storage-tier lifecycle rules on the backup buckets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=tiers)

    p = verbs.add_parser(
        "copy-secondary", help="copy committed backups to the secondary bucket and verify them"
    )
    p.add_argument("--component", help="only this component")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=copy_secondary)


def prune(args: argparse.Namespace) -> int:
    from backstop.core.errors import InvalidInput
    from flows.retention import prune_backups

    if args.source is not None:
        if args.component is None:
            raise InvalidInput("prune: --source needs --component")
        check_source_name(args.source)
    result = prune_backups(args.component or "", args.source or "", args.dry_run, args.settings)
    rows = [{c: r.get(c) for c in PLAN_COLUMNS} for r in result["rows"]]
    removed = sum(r["decision"] == "remove" for r in rows)
    verb = "would remove" if args.dry_run else "removed"
    text = text_table(rows) + f"\n\n{len(rows) - removed} kept, {removed} {verb}"
    if result["problems"]:
        text += "\nnot deleted:\n" + "\n".join(f"  {p}" for p in result["problems"])
    if result.get("kept_by_bucket"):
        text += "\nkept by the bucket (holds, retention policy):\n" + "\n".join(
            f"  {k}" for k in result["kept_by_bucket"]
        )
    # what changed or needs a look, each named by its bucket and source (a hold that stays is no news)
    notes = [
        f"{s['bucket']} {s['component']}/{s['source']}: {n}"
        for s in result["summaries"]
        for n in s["notes"]
        if not n.endswith(" is held")
    ]
    if notes:
        text += "\n" + "\n".join(notes)
    emit(args, result, text)
    return 1 if result["problems"] and not args.dry_run else 0


def preflight(args: argparse.Namespace) -> int:
    from flows.retention import preflight_check

    findings = preflight_check(args.settings, fail_on_error=False, iam=args.iam)
    emit(args, findings, text_table(findings, ["level", "bucket", "check", "message"]))
    return 1 if any(f["level"] == "error" for f in findings) else 0


def tiers(args: argparse.Namespace) -> int:
    from flows.retention import ensure_storage_tiers

    result = ensure_storage_tiers(args.settings)
    rows = [
        {
            "class": r["action"].get("storageClass", r["action"]["type"]),
            "age_days": r["condition"]["age"],
            "prefixes": ", ".join(r["condition"]["matchesPrefix"]),
        }
        for r in result["rules"]
    ]
    text = (
        text_table(rows)
        + "\n"
        + "\n".join(
            f"gs://{b}: {'updated' if changed else 'unchanged'}" for b, changed in result["changed"].items()
        )
    )
    if result["warnings"]:
        text += "\nwarnings:\n" + "\n".join(f"  {w}" for w in result["warnings"])
    emit(args, result, text)
    return 0


def copy_secondary(args: argparse.Namespace) -> int:
    from flows.secondary import copy_backups_to_secondary

    rows = copy_backups_to_secondary(args.component or "", args.settings)
    emit(args, rows, text_table(rows))
    return 0
