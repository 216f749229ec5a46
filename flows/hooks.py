"""State hooks attached to every flow: failures and crashes notify through the configured block.

Every flow uses `@flow(name=..., **HOOKS)`. A hook runs in the flow's process right after the final
state is set; an error inside it is logged and never hides the flow's own failure. The server-side
automations made by deployments/bootstrap.py alert too (also when the process died before its
hooks could run, and when nothing ran at all).
"""

from __future__ import annotations

from typing import Any

from prefect.logging import get_logger

from blocks.settings import DEFAULT_BLOCK_NAME

log = get_logger("backstop.hooks")


def failure_message(
    flow_name: str, run_name: str, run_id: Any, state_name: str, message: str | None
) -> tuple[str, str]:
    """(subject, body) of a failure notification."""
    subject = f"Backstop: {flow_name} {state_name}"
    body = f"Flow run {run_name} ({run_id}) of {flow_name} ended {state_name}: {message or 'no message'}"
    return subject, body


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Send '<flow> <state>: <message>' through the notification block named in the settings."""
    try:
        from flows.notify import send_notification

        subject, body = failure_message(flow.name, flow_run.name, flow_run.id, state.name, state.message)
        settings_block = str((flow_run.parameters or {}).get("settings_block") or DEFAULT_BLOCK_NAME)
        if not send_notification(subject=subject, body=body, settings_block=settings_block):
            log.info("no notify_block in settings %r: failure of %s not sent", settings_block, flow_run.name)
    except Exception as exc:  # a hook must never hide the original failure
        log.warning("could not send failure notification: %s", exc)


HOOKS: dict[str, Any] = {"on_failure": [notify_failure], "on_crashed": [notify_failure]}
