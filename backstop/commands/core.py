"""Core verbs: setup, up, down, status, list, validate, demo."""

from __future__ import annotations

import argparse
from typing import Any

from backstop.cli import emit, state_dir
from backstop.core.manifest import select
from backstop.core.names import check_backup_id, check_percent, parse_time
from backstop.core.report import human_bytes, text_table


def register(verbs: Any, groups: dict[str, Any]) -> None:
    p = verbs.add_parser(
        "setup", help="one-off offline setup of the local platform (DuckDB spatial and avro extensions)"
    )
    p.set_defaults(handler=setup, no_platform_env=True)

    p = verbs.add_parser("up", help="start the local platform (emulators + Prefect server)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=up, no_platform_env=True)

    p = verbs.add_parser("down", help="stop what `backstop up` started")
    p.set_defaults(handler=down, no_platform_env=True)

    p = verbs.add_parser("status", help="what of the local platform is running")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=status, no_platform_env=True)

    p = verbs.add_parser("list", help="list backups in the catalog")
    p.add_argument("--component")
    p.add_argument("--source")
    p.add_argument("--before", help="only backups started at or before this ISO time")
    p.add_argument("--validated", action="store_true", help="only validated backups")
    p.add_argument("--all", action="store_true", help="also failed and abandoned runs (run records)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=list_backups)

    p = verbs.add_parser("validate", help="validate a backup by id")
    p.add_argument("backup_id")
    p.add_argument("--sample-percent", type=float)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=validate)

    p = verbs.add_parser(
        "demo", help="the whole job on the local platform: up, seed, back up, restore, report, down"
    )
    p.add_argument("--keep-running", action="store_true", help="leave the platform up afterwards")
    p.set_defaults(handler=demo, no_platform_env=True)


PLATFORM_SERVICES = ("gcs", "bigquery", "prefect", "gke", "airflow", "composer", "alerts")


def _platform(services: tuple[str, ...] = PLATFORM_SERVICES, home: Any = None) -> Any:
    import backstop.local.airflow_server  # noqa: F401  (each registers its local server)
    import backstop.local.alerts_receiver  # noqa: F401
    import backstop.local.composer_server  # noqa: F401
    import backstop.local.gke_server  # noqa: F401
    from backstop.platform import LocalPlatform

    return LocalPlatform(home or state_dir(), services=services)


def setup(args: argparse.Namespace) -> int:
    from backstop.platform import ensure_duckdb_spatial, fake_gcs_binary

    ensure_duckdb_spatial()
    fake_gcs_binary()
    print("local platform prerequisites are installed (no downloads needed at run time)")
    return 0


def up(args: argparse.Namespace) -> int:
    platform = _platform()
    platform.up(echo=print)
    env = _platform(("worker",)).up(echo=print)  # a process worker for the deployments, once Prefect is up
    ui = platform.running().get("prefect", {}).get("endpoints", {}).get("PREFECT_UI_URL")
    emit(args, {"env": env, "ui": ui}, f"Prefect UI: {ui}\nclient environment: source {state_dir() / 'env'}")
    return 0


def down(args: argparse.Namespace) -> int:
    stopped = _platform().down(echo=print)
    if not stopped:
        print("nothing was running")
    return 0


def status(args: argparse.Namespace) -> int:
    """Every process `backstop up` (and a demo left running) started, by pid."""
    from backstop.demo import demo_home

    running = _platform().running()
    demo = _platform(home=demo_home(state_dir())).running()
    rows = [
        {
            "platform": where,
            "service": n,
            "pid": str(i["pid"]),
            "endpoints": " ".join(v for k, v in i["endpoints"].items() if k.endswith(("_URL", "_HOST"))),
        }
        for where, services in (("backstop up", running), ("demo", demo))
        for n, i in services.items()
    ]
    text = text_table(rows) if rows else "the local platform is not running"
    if demo:
        text += (
            f"\nthe demo's platform was left running: BACKSTOP_HOME={demo_home(state_dir())} backstop down"
        )
    emit(args, {"services": running, "demo": demo}, text)
    return 0


def _settings(args: argparse.Namespace) -> Any:
    from blocks.settings import load_settings

    return load_settings(args.settings)


def list_backups(args: argparse.Namespace) -> int:
    """Backups (and with --all the failed runs) as a table, or typed JSON (bytes, ISO 8601 times)."""
    from tasks.catalog import list_runs
    from tasks.component import get_component
    from tasks.context import open_store

    if args.component:
        get_component(args.component)  # an unknown name is an error, as in `backup`
    before = parse_time(args.before) if args.before else None
    store = open_store(_settings(args))
    damaged: list[str] = []
    found = select(
        store.list_headers(args.component, args.source, on_damaged=damaged.append),
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
        }
        for m in found
    ]
    runs = []
    if args.all:
        records = list_runs(store, args.component, args.source, on_damaged=damaged.append)
        runs = [r.row() | {"transient": r.transient} for r in records if r.failed]
    shown = [
        {k: v for k, v in b.items() if k not in ("started_at", "bytes")}
        | {"started_utc": f"{m.started_at:%Y-%m-%d %H:%M:%S}", "size": human_bytes(m.total_bytes)}
        for b, m in zip(backups, found, strict=True)
    ]
    text = text_table(shown)
    if args.all:
        text += "\n\nfailed or abandoned runs:\n" + (text_table(runs) if runs else "none")
    text += "".join(f"\nwarning: {d}" for d in damaged)
    emit(args, {"backups": backups, "runs": runs, "damaged": damaged}, text)
    return 0


def validate(args: argparse.Namespace) -> int:
    from flows.validate import validate_backup

    check_backup_id(args.backup_id)
    if args.sample_percent is not None:
        check_percent(args.sample_percent, "--sample-percent")
    row = validate_backup(args.backup_id, args.sample_percent, args.settings)
    emit(args, row, text_table([row]))
    return 0


def demo(args: argparse.Namespace) -> int:
    from backstop.demo import run_demo

    return run_demo(state_dir(), keep_running=args.keep_running)
