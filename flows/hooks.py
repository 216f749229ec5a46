"""State hooks attached to every flow: failures and crashes notify through the configured block.

Every flow is made by `@backstop_flow(name=...)`, which attaches them. A hook runs in the flow's
process right after the final state is set; an error inside it is logged and never hides the flow's
own failure.

One failed run sends one alert: a run tagged `backstop` (every deployment of prefect.yaml) is
covered by the server-side failure automation deployments/bootstrap.py makes (it fires also when
the process died before its hooks could run), so the hook stays quiet for it while that automation
exists; runs the automation does not see (the CLI's, a script's) alert through the hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
from prefect.logging import get_logger
from pydantic import BaseModel

from blocks.settings import DEFAULT_BLOCK_NAME

log = get_logger("backstop.hooks")

TAG = "backstop"  # the tag of every deployment in prefect.yaml
FAILED_AUTOMATION = "backstop-flow-run-failed"  # the automation that alerts on tagged runs


def failure_message(
    flow_name: str, run_name: str, run_id: Any, state_name: str, message: str | None
) -> tuple[str, str]:
    """(subject, body) of a failure notification."""
    subject = f"Backstop: {flow_name} {state_name}"
    body = f"Flow run {run_name} ({run_id}) of {flow_name} ended {state_name}: {message or 'no message'}"
    return subject, body


def covered_by_automation(flow_run: Any) -> bool:
    """The failure automation will alert on this run: it is tagged and the automation is enabled."""
    if TAG not in (flow_run.tags or []):
        return False
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return any(a.enabled for a in client.read_automations_by_name(FAILED_AUTOMATION))


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Send '<flow> <state>: <message>' through the notification block named in the settings."""
    try:
        from flows.notify import send_notification

        if covered_by_automation(flow_run):
            log.info("failure of %s is alerted by the %s automation", flow_run.name, FAILED_AUTOMATION)
            return

        subject, body = failure_message(flow.name, flow_run.name, flow_run.id, state.name, state.message)
        settings_block = str((flow_run.parameters or {}).get("settings_block") or DEFAULT_BLOCK_NAME)
        if not send_notification(subject=subject, body=body, settings_block=settings_block):
            log.info("no notify_block in settings %r: failure of %s not sent", settings_block, flow_run.name)
    except Exception as exc:  # a hook must never hide the original failure
        log.warning("could not send failure notification: %s", exc)


HOOKS: dict[str, Any] = {"on_failure": [notify_failure], "on_crashed": [notify_failure]}


P = ParamSpec("P")
R = TypeVar("R")


class BackstopFlow(Flow[P, R]):
    """A Prefect flow whose JSON parameters are stored as they are, and whose runs called in a process
    (the CLI, the demo, a script, a parent flow) send no flow-run heartbeat.

    Prefect stores a run's parameters through FastAPI's `jsonable_encoder`, and importing FastAPI for
    it costs every CLI command ~0.15 s before its first request. Backstop's parameters are JSON values
    and pydantic models (a component's options): those are stored as JSON as the encoder would store
    them (a model as its JSON dump, a tuple as a list); any other value takes Prefect's own path.

    Prefect's heartbeat thread sleeps in 1 s steps and is joined when a run ends: up to a second
    added to every run, each subflow of a drill or a recovery included (and so to the recovery time
    they measure). Heartbeats tell the server that a process died: the top-level run of a deployment,
    which Prefect's worker starts without calling the flow, keeps them and covers its subflows; a run
    called from a terminal is watched there, and one that fails or is interrupted is marked so by
    Prefect's engine anyway."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from prefect.context import SettingsContext

        context = SettingsContext.get()
        if context is None or context.settings.flows.heartbeat_frequency is None:
            return super().__call__(*args, **kwargs)
        # A copy with only that changed: Prefect's temporary_settings builds its settings anew from
        # every source (~35 ms of every command)
        settings = context.settings
        flows = settings.flows.model_copy(update={"heartbeat_frequency": None})
        with SettingsContext(profile=context.profile, settings=settings.model_copy(update={"flows": flows})):
            return super().__call__(*args, **kwargs)

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        try:
            return {key: as_json(value) for key, value in parameters.items()}
        except TypeError:
            return super().serialize_parameters(parameters)


def as_json(value: Any) -> Any:
    """`value` as a JSON value; TypeError for anything but JSON values, tuples and pydantic models."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def backstop_flow(name: str, **options: Any) -> Callable[[Callable[P, R]], BackstopFlow[P, R]]:
    """`@flow(name=...)` for Backstop: a BackstopFlow with the failure hooks (HOOKS) attached."""

    def make(fn: Callable[P, R]) -> BackstopFlow[P, R]:
        return BackstopFlow(fn=fn, name=name, **HOOKS, **options)

    return make
