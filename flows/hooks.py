"""State hooks attached to every flow: failures and crashes notify through the configured block."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger  # noqa: F401  (re-exported for flows)
from prefect.logging import get_logger

log = get_logger("backstop.hooks")


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Send '<flow> <state>: <message>' through the notification block named in the settings."""
    try:
        from flows.notify import send_notification

        send_notification(
            subject=f"Backstop: {flow.name} {state.name}",
            body=f"Flow run {flow_run.name} ({flow_run.id}) ended {state.name}: {state.message or ''}",
            settings_block=str((flow_run.parameters or {}).get("settings_block", "default")),
        )
    except Exception as exc:  # a hook must never hide the original failure
        log.warning("could not send failure notification: %s", exc)


HOOKS: dict[str, Any] = {"on_failure": [notify_failure], "on_crashed": [notify_failure]}
