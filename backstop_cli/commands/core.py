"""Core verbs: list (backups, runs, restore points), validate, warm (backstop_cli/warm.py)."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.core.names import check_backup_id, check_percent, parse_time
from backstop.core.report import human_bytes, text_table
from backstop_cli.main import emit


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = verbs.add_parser("list", help="list backups in the catalog")
    p.add_argument("--component")
    p.add_argument("--source")
    p.add_argument("--before", help="only backups started at or before this ISO time")
    p.add_argument("--validated", action="store_true", help="only validated backups")
    p.add_argument("--all", action="store_true", help="also failed and abandoned runs (run records)")
    p.add_argument(
        "--restore-points",
        action="store_true",
        help="restore points instead of backups: per source and time, the backup each part comes from",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=list_backups, needs="catalog")

    p = verbs.add_parser(
        "warm",
        help="keep the command line warm: this home's commands start at once instead of after ~1.5 s of "
        "imports (runs until stopped; `backstop up` starts one)",
    )
    p.set_defaults(handler=warm, no_platform_env=True)

    p = verbs.add_parser("validate", help="validate a backup by id")
    p.add_argument("backup_id")
    p.add_argument("--sample-percent", type=float)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=validate)


def warm(args: argparse.Namespace) -> int:
    from backstop_cli.home import state_dir
    from backstop_cli.warm import main

    return main(["--home", str(state_dir())])


def _settings(args: argparse.Namespace) -> Any:
    from blocks.settings import load_settings

    return load_settings(args.settings)


def list_backups(args: argparse.Namespace) -> int:
    """Backups (and with --all the failed runs) as a table, or typed JSON (bytes, ISO 8601 times)."""
    from tasks.catalog import index
    from tasks.catalog.backups import list_runs
    from tasks.engine.protocol import get_component
    from tasks.storage.bucket import open_store

    if args.component:
        get_component(args.component)  # an unknown name is an error, as in `backup`
    before = parse_time(args.before) if args.before else None
    store = open_store(_settings(args))
    if args.restore_points:
        return list_restore_points(args, store, before)
    damaged: list[str] = []
    from backstop.core.manifest import select

    found = select(
        index.read_headers(store, args.component, args.source, on_damaged=damaged.append),
        args.component,
        args.source,
        before,
        args.validated,
    )
    backups = [
        {
            "backup_id": m.backup_id,
            "component": m.component,
            "source": m.source,
            "started_at": m.started_at.isoformat(),
            "seconds": round(m.duration_seconds or 0, 1),
            "entries": m.entry_count,
            "bytes": m.total_bytes,
            "status": m.status,
            "parts": m.parts,  # None: every part (Composer backs its parts up on their own schedules)
            "scope": m.scope,  # None: the whole source (else the --prefix / --table it was narrowed to)
        }
        for m in found
    ]
    runs = []
    if args.all:
        records = list_runs(store, args.component, args.source, on_damaged=damaged.append)
        runs = [r.row() | {"transient": r.transient} for r in records if r.failed]
    partial = any(m.parts or m.scope for m in found)  # say what each holds where one holds less
    shown = [
        {k: v for k, v in b.items() if k not in ("started_at", "bytes", "parts", "scope")}
        | {"started_utc": f"{m.started_at:%Y-%m-%d %H:%M:%S}", "size": human_bytes(m.total_bytes)}
        | ({"holds": ", ".join(m.parts or m.scope or ["all"])} if partial else {})
        for b, m in zip(backups, found, strict=True)
    ]
    text = text_table(shown)
    if args.all:
        text += "\n\nfailed or abandoned runs:\n" + (text_table(runs) if runs else "none")
    text += "".join(f"\nwarning: {d}" for d in damaged)
    unreachable = getattr(args, "unreachable", [])
    down = [r for r in unreachable if not args.component or r["component"] == args.component]
    if down:
        text += "\n\nnot reachable (listed from the catalog all the same):\n" + text_table(down)
    emit(args, {"backups": backups, "runs": runs, "damaged": damaged, "unreachable": down}, text)
    return 3 if down else 0


def list_restore_points(args: argparse.Namespace, store: Any, before: Any) -> int:
    """Restore points, newest first: per source and time, each part's backup and its time."""
    from tasks.catalog.points import restore_points
    from tasks.engine.protocol import COMPONENTS, get_component

    damaged: list[str] = []
    found = []
    for name in [args.component] if args.component else sorted(COMPONENTS):
        parts = get_component(name).parts
        found += [
            p
            for p in restore_points(store, name, parts, args.source, on_damaged=damaged.append)
            if before is None or (p.as_of is not None and p.as_of <= before)
        ]
    shown = [
        {
            "component": p.component,
            "source": p.source,
            "as_of_utc": f"{p.as_of:%Y-%m-%d %H:%M:%S}" if p.as_of else "",
            "parts": "; ".join(
                [
                    f"{part.label()}: {part.backup_id} ({part.backup_time:%Y-%m-%d %H:%M:%S})"
                    if part.backup_id and part.backup_time
                    else f"{part.part}: none"
                    for part in p.parts
                ]
                + [  # newer backups of part of the source, laid over
                    f"+ {', '.join(o.scope or [])}: {o.backup_id} ({o.backup_time:%Y-%m-%d %H:%M:%S})"
                    for o in p.overlays
                    if o.backup_time
                ]
            ),
        }
        for p in found
    ]
    text = text_table(shown) if shown else "no restore points"
    text += "".join(f"\nwarning: {d}" for d in damaged)
    emit(args, {"restore_points": [p.row() for p in found], "damaged": damaged}, text)
    return 0


def validate(args: argparse.Namespace) -> int:
    from flows.validate import validate_backup

    check_backup_id(args.backup_id)
    if args.sample_percent is not None:
        check_percent(args.sample_percent, "--sample-percent")
    row = validate_backup(args.backup_id, args.sample_percent, args.settings)
    emit(args, row, text_table([row]))
    return 0
