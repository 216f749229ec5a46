"""The staleness alert, end to end on the local platform in the README's order: `backstop up`,
bootstrap, seed, a short RPO in the settings, `backstop deploy`; then the real Prefect server's
proactive trigger posts to the local alert receiver for a component with no validated backup within
its RPO, and stays quiet for a component whose validation deployment completed within it.

The platform fixture and helpers are test_platform_cli.py's (its own BACKSTOP_HOME, HOME, free ports).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_platform_cli import Api, ok, source_env, user, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

__all__ = ["user"]  # the platform fixture, imported so pytest uses it here

# 21.6 s: above Prefect's 10 s minimum for a proactive window, and long enough for a validation
# deployment run (worker pickup and a process start, ~5-10 s here) to complete inside it.
RPO_HOURS = 0.006
WINDOW = timedelta(hours=RPO_HOURS)
# after a window ends: Prefect evaluates proactive triggers every 5 s, then the action posts
SETTLE = timedelta(seconds=12)


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def automation_created(api: Api, name: str) -> datetime:
    found = api.call("POST", "automations/filter", json={})
    (created,) = [when(a["created"]) for a in found if a["name"] == name]
    return created


def test_staleness_alert_fires_without_a_validated_backup_and_not_with_one(
    user: dict[str, str],  # noqa: F811 (the imported fixture)
) -> None:
    shell = source_env(user)
    ok(shell, "bootstrap")
    ok(shell, "seed", "--objects", "3", "--rows", "10")  # schedules the gcs source demo-raw-data
    ok(shell, "backup", "gcs")  # something to validate (a CLI backup does not count for the alert)
    ok(
        shell,
        "settings",
        "set",
        f"objectives.configs.rpo_hours={RPO_HOURS}",
        f"objectives.gcs.rpo_hours={RPO_HOURS}",
    )
    deployed = json.loads(ok(shell, "deploy", "--json"))
    assert {"backstop-stale-configs", "backstop-stale-gcs"} <= set(deployed["automations"])

    api = Api(shell["PREFECT_API_URL"])
    configs_since = automation_created(api, "backstop-stale-configs")
    gcs_since = automation_created(api, "backstop-stale-gcs")
    # gcs: its validation deployment runs on the worker and completes within the window
    validation = api.wait_final(api.run("validate-gcs", "gcs-validate"), timeout=WINDOW.total_seconds())
    assert validation["state"]["type"] == "COMPLETED", validation["state"]
    assert when(validation["end_time"]) < gcs_since + WINDOW, "the validation ended after the window"

    def staleness(component: str) -> list[dict[str, Any]]:
        messages = json.loads(ok(shell, "alerts", "--json"))
        return [
            m
            for m in messages
            if m["subject"] == f"Backstop: no {component} backup within its RPO of {RPO_HOURS:g} h"
        ]

    # configs: nothing validated it, so the alert fires once its window has passed (~5 s later)
    limit = (configs_since + WINDOW + 3 * SETTLE - datetime.now(configs_since.tzinfo)).total_seconds()
    alerts = wait_for(lambda: staleness("configs"), timeout=max(limit, 1))
    assert alerts, f"no staleness alert for configs: {json.loads(ok(shell, 'alerts', '--json'))}"
    first = alerts[0]
    assert "No validated backup of configs: no validation run (configs-validate) completed" in first["text"]
    fired = (when(first["received_at"]) - configs_since).total_seconds()
    assert fired >= WINDOW.total_seconds() - 1  # not before its window ended (received_at is in whole s)
    ended = (when(validation["end_time"]) - gcs_since).total_seconds()
    print(
        f"configs alerted {fired:.0f} s after its automation was created; gcs validated after {ended:.1f} s"
    )

    # gcs: once its window (and Prefect's evaluation after it) has passed, still no alert
    rest = (gcs_since + WINDOW + SETTLE - datetime.now(gcs_since.tzinfo)).total_seconds()
    time.sleep(max(rest, 0))
    assert staleness("gcs") == []


def test_an_rpo_under_prefects_shortest_proactive_window_still_deploys() -> None:
    from uuid import uuid4

    from deployments.bootstrap import staleness_automation

    automation = staleness_automation("configs", ["configs-validate"], 0.001, uuid4())  # 3.6 s
    assert automation.trigger.within == timedelta(seconds=10)  # Prefect refuses less
