"""`backstop backup gke` and `backstop restore gke`."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.cli import add_yes, check_overwrite_approved, emit
from backstop.names import check_backup_id, parse_time
from backstop.report import text_table


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = groups["backup"].add_parser("gke", help="back up GKE clusters through Backup for GKE")
    p.add_argument(
        "--cluster", action="append", help="cluster short name (repeatable; default: settings.gke.clusters)"
    )
    p.add_argument("--no-validate", action="store_true", help="skip validation after the backup")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backup)

    p = groups["restore"].add_parser(
        "gke", help="restore a GKE backup (whole, chosen namespaces or chosen resources)"
    )
    p.add_argument("--cluster", required=True, help="the backed-up cluster")
    p.add_argument("--backup-id")
    p.add_argument("--before", help="latest validated backup at or before this ISO time")
    p.add_argument(
        "--target-cluster", help="restore into this cluster ('name' or 'name:suffix'); default the source"
    )
    p.add_argument("--namespace", action="append", help="restore only this namespace (repeatable)")
    p.add_argument(
        "--resource",
        action="append",
        help="restore only this object: namespace/Kind/name or Kind/name (repeatable)",
    )
    p.add_argument("--rename", action="append", help="restore namespace old as new: old=new (repeatable)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing resources (else a conflict fails)"
    )
    add_yes(p)
    p.add_argument("--dry-run", action="store_true", help="show what would be restored, change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore)


def backup(args: argparse.Namespace) -> int:
    from flows.gke import backup_gke
    from tasks.gke_plans import check_cluster

    for cluster in args.cluster or []:
        check_cluster(cluster)
    rows = backup_gke(args.cluster, not args.no_validate, args.settings)
    emit(args, rows, text_table(rows))
    return 0


def restore(args: argparse.Namespace) -> int:
    from flows.gke import restore_gke
    from tasks.gke_plans import check_cluster, check_namespace, parse_renames, parse_resources, parse_target

    check_cluster(args.cluster)
    check_overwrite_approved(args, into_original=args.target_cluster in (None, "", args.cluster))
    if args.target_cluster:
        parse_target(args.target_cluster)
    if args.backup_id:
        check_backup_id(args.backup_id)
    if args.before:
        parse_time(args.before)
    for namespace in args.namespace or []:
        check_namespace(namespace)
    renames = parse_renames(args.rename)
    parse_resources(args.resource)
    summary = restore_gke(
        args.cluster,
        args.backup_id,
        args.before,
        args.target_cluster,
        args.namespace,
        renames or None,
        args.overwrite,
        args.dry_run,
        args.settings,
        resources=args.resource,
        approved=args.yes,
    )
    rows = [a for a in summary["actions"] if "namespace" in a or "resource" in a]
    table = {k: v for k, v in summary.items() if k != "actions"}
    emit(args, summary, text_table([table]) + ("\n\n" + text_table(rows) if rows else ""))
    return 0
