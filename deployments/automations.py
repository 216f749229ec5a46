"""The automations `backstop deploy` creates, and makes again when the objectives change:

- backstop-flow-run-failed: any Failed / Crashed flow run tagged `backstop` -> SendNotification
  (fires even when the flow's process died before its own hooks could run);
- backstop-stale-<component>: a proactive trigger that fires when no `prefect.flow-run.Completed`
  event of the component's *validation* deployments arrives within the component's RPO (an alert
  even when nothing ran at all). A validation deployment runs when a backup deployment completes and
  fails when the backup does not validate, so a completed validation run is a backup that was taken
  and validated: a backup that completes but fails validation does not count. (Backups run from the
  CLI are not deployment runs and count for `backstop health`, not for this automation.)
Both send to the notification block the settings name (settings.notify_block,
'<block-type-slug>/<name>'; deployments/settings_blocks.py saves it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from backstop.core.errors import ConfigError
from blocks.settings import BackstopSettings
from deployments.spec import load_spec, validation_deployments
from flows.hooks import FAILED_AUTOMATION, TAG

STALE_PREFIX = "backstop-stale-"
# The shortest `within` Prefect accepts for a proactive trigger (its EventTrigger refuses less).
MIN_PROACTIVE_WITHIN = timedelta(seconds=10)

FAILED_SUBJECT = "Backstop: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
FAILED_BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }}"
    "{% if deployment %} (deployment {{ deployment.name }}){% endif %}"
    " entered {{ flow_run.state.name }}: {{ flow_run.state.message }}"
)


def notification_block_id(reference: str) -> UUID:
    """Block document id of '<block-type-slug>/<block-name>' (actions reference blocks by id)."""
    if reference.count("/") != 1:
        raise ConfigError(f"notify_block {reference!r} must be '<block-type-slug>/<block-name>'")
    slug, name = reference.split("/")
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name=name, block_type_slug=slug)
        except ObjectNotFound as exc:
            raise ConfigError(f"notification block {reference!r} not found") from exc
    return document.id


def failure_automation(block_id: UUID, tag: str = TAG) -> AutomationCore:
    """Failed or crashed flow runs tagged `tag` -> a notification."""
    return AutomationCore(
        name=FAILED_AUTOMATION if tag == TAG else f"{FAILED_AUTOMATION}-{tag}",
        description="Alert when a Backstop flow run fails or crashes.",
        enabled=True,
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"},
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=FAILED_SUBJECT, body=FAILED_BODY)],
    )


def staleness_automation(
    component: str, deployments: list[str], rpo_hours: float, block_id: UUID
) -> AutomationCore:
    """No Completed run of any of `deployments` (the component's validation deployments) within
    `rpo_hours` -> a notification. An RPO shorter than Prefect's shortest proactive window (10 s)
    is checked over that window instead of failing the deploy."""
    hours = f"{rpo_hours:g}"
    return AutomationCore(
        name=f"{STALE_PREFIX}{component}",
        description=f"Alert when no backup of {component} is validated within its RPO ({hours} h).",
        enabled=True,
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.name": deployments},
            expect={"prefect.flow-run.Completed"},
            posture=Posture.Proactive,
            threshold=1,
            within=max(timedelta(hours=rpo_hours), MIN_PROACTIVE_WITHIN),
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=f"Backstop: no {component} backup within its RPO of {hours} h",
                body=(
                    f"No validated backup of {component}: no validation run ({', '.join(deployments)}) "
                    f"completed in the last {hours} h. "
                    "Check the backup deployments, the work pool's worker and the failed runs."
                ),
            )
        ],
    )


def replace_automation(automation: AutomationCore) -> UUID:
    """Make sure `automation` exists, once: an existing one of the same name and definition is kept,
    the others of that name are deleted, and it is created if none was kept (so deploy can be re-run).

    Keeping an unchanged one matters for the staleness automations: Prefect starts a proactive
    trigger's window afresh when it is made again, so a `backstop deploy` run more often than the RPO
    (in CI, say) would otherwise restart the window each time and the alert would never fire."""
    with get_client(sync_client=True) as client:
        kept: UUID | None = None
        for old in client.read_automations_by_name(automation.name):
            if kept is None and _definition(old) == _definition(automation):
                kept = old.id
            else:
                client.delete_automation(old.id)
        return kept or client.create_automation(automation)


def _definition(automation: AutomationCore) -> dict[str, Any]:
    """What an automation does (its trigger's generated id left out), to compare one read back."""
    found = automation.model_dump(mode="json", include=set(AutomationCore.model_fields))
    found["trigger"].pop("id", None)
    return found


def create_automations(
    settings: BackstopSettings, spec: dict[str, Any] | None = None, tag: str = TAG
) -> dict[str, UUID]:
    """The failure automation and one staleness automation per component with backup deployments.

    Raises:
        ConfigError: settings.notify_block is unset or names no block.
    """
    if not settings.notify_block:
        raise ConfigError(
            "settings name no notify_block: run `backstop bootstrap --notify slack:URL` (or webhook:URL)"
        )
    block_id = notification_block_id(settings.notify_block)
    wanted = [failure_automation(block_id, tag)]
    for component, names in sorted(validation_deployments(spec or load_spec()).items()):
        wanted.append(
            staleness_automation(component, names, settings.objectives_for(component).rpo_hours, block_id)
        )
    return {automation.name: replace_automation(automation) for automation in wanted}


def follow_objectives(settings: BackstopSettings, components: list[str]) -> list[str]:
    """Make the existing staleness automations of `components` again with the settings' RPO (after
    a settings change); the components whose automation was made again. Components without one are left alone
    (`backstop deploy` creates them).

    Raises:
        ConfigError: settings.notify_block is unset or names no block.
    """
    with get_client(sync_client=True) as client:
        existing = [c for c in components if client.read_automations_by_name(f"{STALE_PREFIX}{c}")]
    deployments = validation_deployments(load_spec())
    existing = [c for c in existing if c in deployments]
    if not existing:
        return []
    if not settings.notify_block:
        raise ConfigError("settings name no notify_block")
    block_id = notification_block_id(settings.notify_block)
    for component in existing:
        rpo = settings.objectives_for(component).rpo_hours
        replace_automation(staleness_automation(component, deployments[component], rpo, block_id))
    return existing
