"""Bootstrap a Prefect server for Backstop: block types, default settings, work pool, deployments, automations.

`bootstrap()` registers the block types, saves a default settings document (when none exists) and
creates the process work pool. `deploy()` then runs `prefect --no-prompt deploy --all` on
prefect.yaml and creates the automations:
- backstop-flow-run-failed: any Failed / Crashed flow run tagged `backstop` -> SendNotification
  (fires even when the flow's process died before its own hooks could run);
- backstop-stale-<component>: a proactive trigger that fires when no `prefect.flow-run.Completed`
  event of the component's backup deployments arrives within the component's RPO (an alert even
  when nothing ran at all).
Automations need a notification block: settings.notify_block ('<block-type-slug>/<name>').
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from backstop.errors import ConfigError, Unavailable
from blocks.settings import DEFAULT_BLOCK_NAME, BackstopSettings

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"
WORK_POOL = "backstop-process"
TAG = "backstop"
FAILED_AUTOMATION = "backstop-flow-run-failed"
STALE_PREFIX = "backstop-stale-"

FAILED_SUBJECT = "Backstop: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
FAILED_BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }}"
    "{% if deployment %} (deployment {{ deployment.name }}){% endif %}"
    " entered {{ flow_run.state.name }}: {{ flow_run.state.message }}"
)


def load_spec(path: Path = PREFECT_YAML) -> dict[str, Any]:
    """The parsed prefect.yaml."""
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    return spec


def backup_deployments(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Backup deployment names per component ('gcs' -> ['gcs-daily-backup', ...]) from the spec."""
    found: dict[str, list[str]] = {}
    for deployment in spec.get("deployments", []):
        module, function = deployment["entrypoint"].split(":")
        if function.startswith("backup_"):
            found.setdefault(Path(module).stem, []).append(deployment["name"])
    return found


# -- blocks and settings -------------------------------------------------------------------
def register_block_types() -> list[str]:
    """Register Backstop's block types (and prefect-gcp's credentials) with the server."""
    from prefect_gcp import GcpCredentials

    registered = []
    for block in (BackstopSettings, GcpCredentials):
        block.register_type_and_schema()
        registered.append(block.get_block_type_slug())
    return registered


def default_settings(project: str, bucket: str = "backstop-backups") -> BackstopSettings:
    """The settings document a fresh install starts from (edit it in the UI)."""
    return BackstopSettings(project=project, backup_bucket=bucket, secondary_bucket=f"{bucket}-dr")


def save_default_settings(
    settings: BackstopSettings | None = None, name: str = DEFAULT_BLOCK_NAME, overwrite: bool = False
) -> bool:
    """Save `settings` (default: default_settings) as block `name` unless it exists; True when saved."""
    from backstop.platform import PROJECT

    if not overwrite:
        try:
            BackstopSettings.load(name)
            return False
        except ValueError:
            pass
    (settings or default_settings(PROJECT)).save(name, overwrite=True)
    return True


# -- work pool -----------------------------------------------------------------------------
def ensure_work_pool(name: str = WORK_POOL) -> bool:
    """Create the process work pool `name` if missing; True when created."""
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        template = ProcessWorker.get_default_base_job_template()
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
        except ObjectAlreadyExists:
            return False
    return True


# -- automations ---------------------------------------------------------------------------
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
    """No Completed run of any of `deployments` within `rpo_hours` -> a notification."""
    hours = f"{rpo_hours:g}"
    return AutomationCore(
        name=f"{STALE_PREFIX}{component}",
        description=f"Alert when no backup of {component} completes within its RPO ({hours} h).",
        enabled=True,
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.name": deployments},
            expect={"prefect.flow-run.Completed"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(hours=rpo_hours),
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=f"Backstop: no {component} backup within its RPO of {hours} h",
                body=(
                    f"No backup deployment of {component} ({', '.join(deployments)}) completed in the last {hours} h. "
                    "Check the deployments, the work pool's worker and the failed runs."
                ),
            )
        ],
    )


def replace_automation(automation: AutomationCore) -> UUID:
    """Create `automation`, deleting earlier ones of the same name (so bootstrap can be re-run)."""
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(automation.name):
            client.delete_automation(old.id)
        return client.create_automation(automation)


def create_automations(
    settings: BackstopSettings, spec: dict[str, Any] | None = None, tag: str = TAG
) -> dict[str, UUID]:
    """The failure automation and one staleness automation per component with backup deployments.

    Raises:
        ConfigError: settings.notify_block is unset or names no block.
    """
    if not settings.notify_block:
        raise ConfigError("settings name no notify_block: save one with blocks.notifications and set it")
    block_id = notification_block_id(settings.notify_block)
    wanted = [failure_automation(block_id, tag)]
    for component, names in sorted(backup_deployments(spec or load_spec()).items()):
        wanted.append(
            staleness_automation(component, names, settings.objectives_for(component).rpo_hours, block_id)
        )
    return {automation.name: replace_automation(automation) for automation in wanted}


# -- the whole thing -----------------------------------------------------------------------
def bootstrap(
    settings_block: str = DEFAULT_BLOCK_NAME, settings: BackstopSettings | None = None
) -> dict[str, Any]:
    """Register block types, save default settings (when missing), create the backup buckets
    (when missing) and the work pool."""
    return {
        "block_types": register_block_types(),
        "settings_saved": save_default_settings(settings, settings_block),
        "backup_buckets_created": ensure_backup_buckets(settings_block),
        "work_pool_created": ensure_work_pool(),
    }


def ensure_backup_buckets(settings_block: str = DEFAULT_BLOCK_NAME) -> list[str]:
    """Create the primary and secondary backup buckets named by the settings if they are missing,
    hardened (`backstop harden`: uniform access, no public access, soft delete, retention policy)."""
    from blocks.settings import load_settings
    from tasks.context import open_store
    from tasks.harden import harden_bucket, shortest_retention_days

    settings = load_settings(settings_block)
    created = []
    for secondary in (False, True) if settings.secondary_bucket else (False,):
        store = open_store(settings, secondary=secondary)
        if store.client.lookup_bucket(store.bucket_name) is None:
            store.ensure_bucket((secondary and settings.secondary_location) or settings.location)
            harden_bucket(store.client, store.bucket_name, shortest_retention_days(settings)[0])
            created.append(store.bucket_name)
    return created


def deployable(spec: dict[str, Any], project_dir: Path = ROOT) -> tuple[list[str], list[str]]:
    """(deployments whose entrypoint file exists, those whose file does not exist yet)."""
    ready: list[str] = []
    missing: list[str] = []
    for deployment in spec.get("deployments", []):
        path = deployment["entrypoint"].split(":")[0]
        (ready if (project_dir / path).exists() else missing).append(deployment["name"])
    return ready, missing


def run_prefect_deploy(
    api_url: str | None = None, project_dir: Path = ROOT, names: list[str] | None = None, timeout: float = 600
) -> str:
    """`prefect --no-prompt deploy --all` (or `-n NAME ...`) in `project_dir`; Unavailable on failure."""
    env = dict(os.environ, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    prefect = Path(sys.executable).with_name("prefect")
    which = [arg for name in names for arg in ("-n", name)] if names is not None else ["--all"]
    command = [str(prefect) if prefect.exists() else "prefect", "--no-prompt", "deploy", *which]
    done = subprocess.run(command, cwd=project_dir, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise Unavailable(f"prefect deploy failed in {project_dir}: {' | '.join(tail)}")
    return done.stdout


def deploy(
    settings_block: str = DEFAULT_BLOCK_NAME, api_url: str | None = None, automations: bool = True
) -> dict[str, Any]:
    """Bootstrap, deploy every deployment of prefect.yaml, then create the automations.

    Deployments whose entrypoint file does not exist are listed in the result instead of failing
    the whole deploy. Automations are skipped (with a note) when the settings name no
    notification block yet.
    """
    from blocks.settings import load_settings

    result = bootstrap(settings_block)
    ready, missing = deployable(load_spec())
    # Deploy what exists; a component whose flows are not written yet is named, not fatal.
    result["deploy_output"] = run_prefect_deploy(api_url, names=None if not missing else ready)
    result["deployed"] = ready
    result["not_deployed_missing_entrypoint"] = missing
    settings = load_settings(settings_block)
    if automations and settings.notify_block:
        result["automations"] = {name: str(i) for name, i in create_automations(settings).items()}
    else:
        result["automations"] = "skipped: set notify_block in the settings, then run `backstop deploy` again"
    return result
