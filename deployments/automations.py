"""The automations `backstop deploy` creates, and makes again when the objectives change:

- backstop-flow-run-failed: any Failed / Crashed flow run tagged `backstop` -> SendNotification
  (fires even when the flow's process died before its own hooks could run);
- backstop-stale-<component>: a proactive trigger that fires when no `prefect.flow-run.Completed`
  event of the component's *validation* deployments arrives within the component's RPO (an alert
  even when nothing ran at all). A component whose parts are backed up on their own schedules
  (Composer: DAGs and config daily, metadata hourly) gets one per group of parts its validation
  deployments follow, within the shortest RPO of those parts (`backstop-stale-composer-dags-config`,
  24 h; `backstop-stale-composer-metadata`, 1 h): hourly metadata validations never hide DAG backups
  that stopped. A validation deployment runs when a backup deployment completes and
  fails when the backup does not validate, so a completed validation run is a backup that was taken
  and validated: a backup that completes but fails validation does not count. (Backups run from the
  CLI are not deployment runs and count for `backstop health`, not for this automation.)
Both send to the notification block the settings name (settings.notify_block,
'<block-type-slug>/<name>'; deployments/settings_blocks.py saves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from backstop.core.errors import ConfigError
from blocks.settings import BackstopSettings
from deployments.spec import load_spec, validation_deployments, validations_by_part
from flows.hooks import FAILED_AUTOMATION, TAG
from tasks.engine.protocol import component_parts

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
    component: str, deployments: list[str], rpo_hours: float, block_id: UUID, parts: Sequence[str] = ()
) -> AutomationCore:
    """No Completed run of any of `deployments` (the component's validation deployments, those
    following backups of `parts` when given) within `rpo_hours` -> a notification. An RPO shorter than
    Prefect's shortest proactive window (10 s) is checked over that window instead of failing the deploy."""
    hours = f"{rpo_hours:g}"
    what = f"{component} ({', '.join(parts)})" if parts else component
    return AutomationCore(
        name=stale_name(component, parts),
        description=f"Alert when no backup of {what} is validated within its RPO ({hours} h).",
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
                subject=f"Backstop: no {what} backup within its RPO of {hours} h",
                body=(
                    f"No validated backup of {what}: no validation run ({', '.join(deployments)}) "
                    f"completed in the last {hours} h. "
                    "Check the backup deployments, the work pool's worker and the failed runs."
                ),
            )
        ],
    )


def stale_name(component: str, parts: Sequence[str] = ()) -> str:
    """backstop-stale-<component>, or -<component>-<parts> for a group of some of its parts."""
    return STALE_PREFIX + "-".join([component, *parts])


def staleness_automations(
    settings: BackstopSettings, spec: dict[str, Any], block_id: UUID, components: Sequence[str] | None = None
) -> list[AutomationCore]:
    """The staleness automations of `components` (default: every one with validation deployments):
    one per group of parts its validation deployments follow, within the shortest RPO of the group."""
    wanted = []
    for component, groups in sorted(validations_by_part(spec, component_parts).items()):
        if components is not None and component not in components:
            continue
        objectives = settings.objectives_for(component)
        every = component_parts(component)
        for parts, deployments in groups.items():
            rpo = min(objectives.part_rpo_hours.get(p, objectives.rpo_hours) for p in parts or [""])
            named = parts if parts != every else ()
            wanted.append(staleness_automation(component, deployments, rpo, block_id, named))
    return wanted


def replace_stale(
    settings: BackstopSettings, spec: dict[str, Any], block_id: UUID, components: Sequence[str]
) -> dict[str, UUID]:
    """Make the staleness automations of `components` (replace_automation), and delete the others
    of those components (one per component before its parts were watched one by one, a group gone)."""
    wanted = staleness_automations(settings, spec, block_id, components)
    made = {automation.name: replace_automation(automation) for automation in wanted}
    with get_client(sync_client=True) as client:
        for old in client.read_automations():
            mine = any(
                old.name == stale_name(c) or old.name.startswith(stale_name(c) + "-") for c in components
            )
            if mine and old.name not in made:
                client.delete_automation(old.id)
    return made


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
    spec = spec or load_spec()
    made = {
        FAILED_AUTOMATION if tag == TAG else f"{FAILED_AUTOMATION}-{tag}": replace_automation(
            failure_automation(block_id, tag)
        )
    }
    return made | replace_stale(settings, spec, block_id, sorted(validation_deployments(spec)))


def follow_objectives(settings: BackstopSettings, components: list[str]) -> list[tuple[str, float]]:
    """Make the existing staleness automations of `components` again with the settings' RPOs (after
    a settings change); (automation, hours) of each made again. Components without one are left
    alone (`backstop deploy` creates them).

    Raises:
        ConfigError: settings.notify_block is unset or names no block.
    """
    spec = load_spec()
    with get_client(sync_client=True) as client:
        names = [a.name for a in client.read_automations()]
    deployed = [
        c
        for c in components
        if c in validation_deployments(spec)
        and any(n == stale_name(c) or n.startswith(stale_name(c) + "-") for n in names)
    ]
    if not deployed:
        return []
    if not settings.notify_block:
        raise ConfigError("settings name no notify_block")
    block_id = notification_block_id(settings.notify_block)
    replace_stale(settings, spec, block_id, deployed)
    return [
        (a.name, a.trigger.within.total_seconds() / 3600)  # type: ignore[union-attr]
        for a in staleness_automations(settings, spec, block_id, deployed)
    ]
