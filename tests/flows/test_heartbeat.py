"""Flow runs called in a process send no flow-run heartbeat: Prefect's heartbeat thread sleeps in
1 s steps and is joined at a run's end, so each one (every subflow of a drill or a recovery) would
take up to a second longer. A deployment's own run keeps them (the worker starts it without a call)."""

from __future__ import annotations

import time
from typing import Any


def run_events(run_id: str) -> list[str]:
    """The event names the Prefect server holds for the flow run `run_id`."""
    from prefect.client.orchestration import get_client

    wanted = {"any_resource": {"id": [f"prefect.flow-run.{run_id}"]}}
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/events/filter", json={"filter": wanted, "limit": 50})
    return [event["event"] for event in found.json()["events"]]


def wait_for_event(run_id: str, name: str, seconds: float = 30) -> list[str]:
    """The run's events once `name` is among them (empty if it is not within `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = run_events(run_id)
        if name in seen:
            return seen
        time.sleep(0.25)
    return []


def test_a_backstop_flow_called_as_a_subflow_sends_no_heartbeat_where_its_parent_does(
    prefect_harness: None,
) -> None:
    from prefect import flow
    from prefect.runtime import flow_run

    from flows.hooks import backstop_flow

    @backstop_flow(name="heartbeat-child")
    def child() -> str:
        return str(flow_run.id)

    @flow(name="heartbeat-parent")  # a plain Prefect flow: heartbeats on, as Prefect's default
    def parent() -> tuple[str, str]:
        return str(flow_run.id), child()

    parent_id, child_id = parent()
    # Events reach the server's store asynchronously: wait for the parent's heartbeat and for the
    # child's Completed event (after which a heartbeat of the child, if it sent one, is in too).
    assert wait_for_event(parent_id, "prefect.flow-run.heartbeat")
    assert wait_for_event(child_id, "prefect.flow-run.Completed")
    seen = run_events(child_id)
    assert "prefect.flow-run.heartbeat" not in seen, seen


def test_heartbeats_are_left_off_for_the_call_only(prefect_harness: None) -> None:
    """The setting is changed for the call only: the process's own settings keep their heartbeat."""
    from prefect.settings import get_current_settings

    from flows.hooks import backstop_flow

    seen: dict[str, Any] = {}

    @backstop_flow(name="heartbeat-setting")
    def probe() -> None:
        seen["inside"] = get_current_settings().flows.heartbeat_frequency

    probe()
    assert seen["inside"] is None
    assert get_current_settings().flows.heartbeat_frequency is not None
