"""Verbs of the local platform (a development package, `localdev/`, not in the product's wheel):
`setup`, `up`, `down`, `status`, `demo`, `seed` (sample data) and `alerts`.

Registered only where `localdev` is installed (`make demo` / `make test` install it).
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

import localdev  # noqa: F401  (absent in a production install: then these verbs are not offered)
from backstop.core.errors import ConfigError, Unavailable
from backstop.core.report import left_out, text_table
from backstop_cli.home import state_dir
from backstop_cli.main import emit
from localdev.platform import EXTRA_SERVICES


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

    p = verbs.add_parser(
        "demo", help="the whole job on the local platform: up, seed, back up, restore, report, down"
    )
    p.add_argument("--keep-running", action="store_true", help="leave the platform up afterwards")
    p.set_defaults(handler=demo, no_platform_env=True)

    p = verbs.add_parser(
        "seed",
        help="load the demo's sample data (bucket, dataset, configs, Composer environment) into the "
        "running local platform and add them to the settings' sources",
    )
    p.add_argument("--objects", type=int, default=2000, help="small objects in the sample bucket")
    p.add_argument("--rows", type=int, default=300_000, help="rows of the sample orders table")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=seed)

    p = verbs.add_parser("alerts", help="alerts received by the local platform's alert receiver")
    p.add_argument("--last", type=int, default=20, help="newest N messages (0: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=alerts, platform_check=False)


def seed(args: argparse.Namespace) -> int:
    from localdev.seed import seed_platform

    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        raise ConfigError(
            "`backstop seed` loads sample data into the local platform: start it with `backstop up`"
        )
    rows = seed_platform(args.settings, state_dir(), objects=args.objects, rows=args.rows)
    emit(args, rows, text_table(rows))
    return 0


def alerts(args: argparse.Namespace) -> int:
    base = os.environ.get("BACKSTOP_ALERTS_URL")
    if not base:
        raise Unavailable("local alert receiver not running: start it with `backstop up`")
    try:
        with urllib.request.urlopen(f"{base}/messages", timeout=5) as response:
            messages: list[dict[str, Any]] = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise Unavailable(
            f"local alert receiver not reachable at {base}: start it with `backstop up`"
        ) from exc
    shown = messages[-args.last :] if args.last else messages
    rows = [{"received_at": m["received_at"], "subject": m["subject"], "text": m["text"]} for m in shown]
    text = text_table(rows) if rows else f"no alerts received at {base}"
    cut = left_out(len(shown), len(messages), "`backstop alerts --last 0` shows all")
    emit(args, shown, text + (f"\n{cut}" if cut else ""))
    return 0


PLATFORM_SERVICES = ("gcs", "bigquery", "prefect", "gke", "airflow", "composer", "alerts")


def warm_service(platform: Any) -> Any:
    """`backstop warm` for the platform's home: the command line's imports kept warm (backstop_cli/warm.py)."""
    import sys

    from backstop_cli.warm import ping, socket_path
    from localdev.platform import Service

    return Service(
        "warm",
        [sys.executable, "-m", "backstop_cli.warm", "--home", str(platform.state_dir)],
        lambda: ping(socket_path(platform.state_dir)),
        timeout=90.0,
    )


EXTRA_SERVICES["warm"] = warm_service  # `backstop up` starts it after the worker


def _platform(services: tuple[str, ...] = PLATFORM_SERVICES, home: Any = None) -> Any:
    import localdev.servers.airflow_server  # noqa: F401  (each registers its local server)
    import localdev.servers.alerts_receiver  # noqa: F401
    import localdev.servers.composer_server  # noqa: F401
    import localdev.servers.gke_server  # noqa: F401
    from localdev.platform import LocalPlatform

    return LocalPlatform(home or state_dir(), services=services)


def setup(args: argparse.Namespace) -> int:
    from localdev.platform import ensure_duckdb_spatial, fake_gcs_binary

    ensure_duckdb_spatial()
    fake_gcs_binary()
    print("local platform prerequisites are installed (no downloads needed at run time)")
    return 0


def up(args: argparse.Namespace) -> int:
    platform = _platform()
    platform.up(echo=print)
    # a process worker for the deployments, once Prefect is up; the command line's warm process
    from backstop_cli.warm import supported

    env = _platform(("worker", "warm") if supported() else ("worker",)).up(echo=print)
    ui = platform.running().get("prefect", {}).get("endpoints", {}).get("PREFECT_UI_URL")
    emit(args, {"env": env, "ui": ui}, f"Prefect UI: {ui}\nclient environment: source {state_dir() / 'env'}")
    return 0


def down(args: argparse.Namespace) -> int:
    stopped = _platform().down(echo=print)
    if not stopped:
        print(f"nothing was running from {state_dir()} (BACKSTOP_HOME names another home)")
    return 0


def status(args: argparse.Namespace) -> int:
    """Every process `backstop up` (and a demo left running) started, by pid; one that died is
    shown as "not running (pid N gone)" (and under "gone" in --json); exit 3 when one is gone."""
    from localdev.demo import demo_home

    mine, theirs = _platform(), _platform(home=demo_home(state_dir()))
    running, demo = mine.running(), theirs.running()
    gone, demo_gone = mine.gone(), theirs.gone()
    rows = [
        {
            "platform": where,
            "service": n,
            "state": "running" if n in alive else f"not running (pid {i['pid']} gone)",
            "pid": str(i["pid"]),
            "endpoints": " ".join(v for k, v in i["endpoints"].items() if k.endswith(("_URL", "_HOST"))),
        }
        for where, alive, dead in (("backstop up", running, gone), ("demo", demo, demo_gone))
        for n, i in (alive | dead).items()
    ]
    text = f"home: {state_dir()}\n" + (
        text_table(rows) if rows else "the local platform is not running (BACKSTOP_HOME names another home)"
    )
    if gone:
        text += f"\n{len(gone)} service(s) not running: `backstop up` starts them again"
    if demo:
        text += (
            f"\nthe demo's platform was left running: BACKSTOP_HOME={demo_home(state_dir())} backstop down"
        )
    emit(args, {"home": str(state_dir()), "services": running, "gone": gone, "demo": demo}, text)
    return 3 if gone else 0


def demo(args: argparse.Namespace) -> int:
    from localdev.demo import run_demo

    return run_demo(state_dir(), keep_running=args.keep_running)
