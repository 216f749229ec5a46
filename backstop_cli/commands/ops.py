"""`backstop drill`, `backstop health`, `backstop verify`, `backstop bootstrap` and `backstop deploy`."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

from backstop.core.errors import ObjectiveBreached
from backstop.core.report import fields_table, text_table
from backstop_cli.main import emit


def _not_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = verbs.add_parser(
        "drill", help="restore the latest validated backups into scratch targets, verify, time"
    )
    p.add_argument("--component", action="append", help="component to drill (repeatable; default: all)")
    p.add_argument(
        "--platform", action="store_true", help="recover the whole platform as one operation, timed"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=drill)

    p = verbs.add_parser("health", help="backup age against RPO, last drill against RTO, recent failures")
    p.add_argument(
        "--trend", type=_not_negative, default=5, help="newest backups per source in the trend table"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=health, needs="catalog")

    p = verbs.add_parser(
        "verify",
        help="re-verify kept backups: re-read a rotating share of their bytes, check data outside the bucket",
    )
    p.add_argument("--component", action="append", help="component to re-verify (repeatable; default: all)")
    p.add_argument(
        "--share",
        type=_percent,
        metavar="N%",
        help="share of the stored objects to re-read, e.g. 25%% or 100%% (default: reverify_every_days / "
        "reverify_period_days of the settings)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=verify)

    p = verbs.add_parser("catalog", help="the catalog index of the backups")
    p.add_argument("action", choices=["rebuild"], help="rebuild: write the index again from the manifests")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=catalog)

    p = verbs.add_parser(
        "bootstrap",
        help="register block types, save settings, set up alerts, create the work pool and backup buckets",
    )
    _add_notify(p)
    p.add_argument("--project", help="Google Cloud project (first setup against Google Cloud)")
    p.add_argument("--backup-bucket", help="primary backup bucket")
    p.add_argument("--secondary-bucket", help="bucket in another region for verified copies")
    p.add_argument("--location", help="location of new buckets and BigQuery jobs (e.g. EU, us-central1)")
    p.add_argument(
        "--secondary-location", help="location of the secondary bucket: another one than --location (e.g. US)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=bootstrap)

    p = verbs.add_parser("deploy", help="bootstrap, deploy prefect.yaml, create the alert automations")
    _add_notify(p)
    p.add_argument("--no-automations", action="store_true", help="skip the automations")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=deploy)


def _add_notify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notify",
        metavar="slack:URL|webhook:URL",
        help="where alerts go (default: the settings' notify_block; on the local platform its alert receiver)",
    )


def drill(args: argparse.Namespace) -> int:
    """Run the restore-drill flow; on failure show the drills it recorded, then the error."""
    from tasks.engine.protocol import get_component

    for name in args.component or []:
        get_component(name)  # InvalidInput names the known components
    if args.platform:
        from backstop_cli.commands.recover import platform_drill

        return platform_drill(args)
    from backstop_cli.progress import terminal_progress
    from flows.drill import DRILL_COLUMNS, restore_drill

    began = datetime.now(UTC)
    try:
        with terminal_progress(args):
            rows = restore_drill(args.component or [], settings_block=args.settings)
    except ObjectiveBreached:
        rows = _drills_since(args, began)
        emit(args, rows, text_table(rows, DRILL_COLUMNS))
        raise
    emit(
        args, rows, text_table(rows, DRILL_COLUMNS) if rows else "nothing to drill: no backups in the catalog"
    )
    return 0


def _percent(text: str) -> float:
    from backstop.core.reverify import check_share

    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r} (e.g. 25%)") from None
    try:
        check_share(value)
    except Exception as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def verify(args: argparse.Namespace) -> int:
    """Run the re-verification flow; print one row per source and what was marked; exit 1 if any."""
    from tasks.engine.protocol import get_component

    for name in args.component or []:
        get_component(name)  # InvalidInput names the known components
    from flows.verify import reverify_backups

    result = reverify_backups(
        args.component or [], args.share or 0, fail_on_damage=False, settings_block=args.settings
    )
    totals = result["totals"]
    text = text_table(result["sources"]) if result["sources"] else "nothing to re-verify: no backups kept"
    text += (
        f"\n\n{totals['backups']} backup(s), {totals['objects']} object(s) checked, {totals['read_back']} "
        f"re-read ({result['share']:.0%} share): {totals['damaged']} damaged, {totals['expired']} expired"
    )
    if result["problems"]:
        text += "\nmarked (never chosen for a restore again):\n" + "\n".join(
            f"  {p}" for p in result["problems"]
        )
    emit(args, result, text)
    return 1 if result["problems"] else 0


def _drills_since(args: argparse.Namespace, began: datetime) -> list[dict[str, Any]]:
    from blocks.settings import load_settings
    from tasks.engine.drill import list_drills
    from tasks.storage.bucket import open_store

    store = open_store(load_settings(args.settings))
    wanted = set(args.component or [])
    return [
        d.row()
        for d in list_drills(store, on_damaged=lambda _: None)
        if d.started_at >= began and (not wanted or d.component in wanted)
    ]


def health(args: argparse.Namespace) -> int:
    """Read the catalog and print every source's health (read-only, no flow run); exit 2 on a breach."""
    from backstop.core.objectives import HEALTH_COLUMNS, breaches, trend_rows
    from blocks.settings import load_settings
    from flows.health import catalog_records, source_health
    from tasks.storage.bucket import open_store

    settings = load_settings(args.settings)
    store = open_store(settings)
    manifests, drills, runs, damaged = catalog_records(store)
    rows = source_health(settings, store, manifests, drills, runs, damaged)
    trend = trend_rows(manifests, args.trend)
    data: dict[str, Any] = {"health": [r.row() for r in rows], "trend": trend, "damaged": damaged}
    parts = [text_table(data["health"], HEALTH_COLUMNS[:-1]), text_table(trend)]
    problems = [f"  {r.component}/{r.source}: {p}" for r in rows for p in r.problems]
    if problems:
        parts.append("problems:\n" + "\n".join(problems))
    parts += [f"damaged: {d}" for d in damaged]
    down = getattr(args, "unreachable", [])
    if down:
        parts.append("not reachable (health read from the catalog all the same):\n" + text_table(down))
    text = "\n\n".join(parts)
    emit(args, data | {"unreachable": down}, text)
    breached = breaches(rows)
    if breached:
        raise ObjectiveBreached(f"{len(breached)} source(s) breach an objective: " + " | ".join(breached))
    return 3 if down else 0


def catalog(args: argparse.Namespace) -> int:
    """`backstop catalog rebuild`: index every manifest of the backup bucket (damaged ones are
    named and fail the command, after the rest is indexed)."""
    from blocks.settings import load_settings
    from tasks.catalog.index import rebuild
    from tasks.storage.bucket import open_store

    store = open_store(load_settings(args.settings))
    damaged: list[str] = []
    counts = rebuild(store, damaged.append)
    text = (
        f"catalog of {store.where()}: {counts['indexed']} backup(s) of {counts['sources']} source(s) indexed"
        + "".join(f"\ndamaged: {d}" for d in damaged)
    )
    emit(args, {**counts, "problems": damaged}, text)
    return 1 if damaged else 0


def bootstrap(args: argparse.Namespace) -> int:
    from deployments.bootstrap import bootstrap as run_bootstrap

    first_setup = {
        "project": args.project,
        "backup_bucket": args.backup_bucket,
        "secondary_bucket": args.secondary_bucket,
        "location": args.location,
        "secondary_location": args.secondary_location,
    }
    result = run_bootstrap(args.settings, notify=args.notify, first_setup=first_setup)
    emit(args, result, fields_table(result))
    return 0


def deploy(args: argparse.Namespace) -> int:
    from backstop_cli.progress import terminal_progress
    from deployments.bootstrap import deploy as run_deploy

    with terminal_progress(args):
        result = run_deploy(
            args.settings,
            os.environ.get("PREFECT_API_URL"),
            automations=not args.no_automations,
            notify=args.notify,
        )
    shown = {k: v for k, v in result.items() if k != "deploy_output"}
    emit(args, result, fields_table(shown))
    return 0
