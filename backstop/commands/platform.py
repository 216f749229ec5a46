"""Verbs for the local platform's extras: `backstop seed` (sample data) and `backstop alerts`."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

from backstop.cli import emit, state_dir
from backstop.core.errors import ConfigError, Unavailable
from backstop.core.report import text_table


def register(verbs: Any, groups: dict[str, Any]) -> None:
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
    from backstop.seed import seed_platform

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
    rows = [
        {"received_at": m["received_at"], "subject": m["subject"], "text": m["text"][:120]} for m in shown
    ]
    emit(args, shown, text_table(rows) if rows else f"no alerts received at {base}")
    return 0
