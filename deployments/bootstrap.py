"""Bootstrap a Prefect server for Backstop: block types, default settings, work pool, deployments, automations.

`bootstrap()` registers the block types, saves a default settings document (when none exists) and
creates the process work pool. `deploy()` then runs `prefect --no-prompt deploy --all` on
prefect.yaml and creates the automations:
- backstop-flow-run-failed: any Failed / Crashed flow run tagged `backstop` -> SendNotification
  (fires even when the flow's process died before its own hooks could run);
- backstop-stale-<component>: a proactive trigger that fires when no `prefect.flow-run.Completed`
  event of the component's *validation* deployments arrives within the component's RPO (an alert
  even when nothing ran at all). A validation deployment runs when a backup deployment completes and
  fails when the backup does not validate, so a completed validation run is a backup that was taken
  and validated: a backup that completes but fails validation does not count. (Backups run from the
  CLI are not deployment runs and count for `backstop health`, not for this automation.)
Automations need a notification block: settings.notify_block ('<block-type-slug>/<name>'), which
`bootstrap(notify="slack:URL" | "webhook:URL")` creates; on the local platform it defaults to the
local alert receiver. The work pool's job environment carries the emulator endpoints of the
environment bootstrap runs in (none against Google Cloud), so worker-run flows reach what the CLI reaches.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from backstop.core.errors import ConfigError, InvalidInput, Unavailable
from blocks.clients import EMULATOR_ENV, EXTRA_JOB_ENV
from blocks.settings import DEFAULT_BLOCK_NAME, BackstopSettings
from flows.hooks import FAILED_AUTOMATION, TAG

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"
WORK_POOL = "backstop-process"
STALE_PREFIX = "backstop-stale-"
NOTIFY_BLOCK = "backstop-alerts"  # the block `--notify` saves
LOCAL_ALERTS_BLOCK = "backstop-local-alerts"  # the local platform's receiver
# The shortest `within` Prefect accepts for a proactive trigger (its EventTrigger refuses less).
MIN_PROACTIVE_WITHIN = timedelta(seconds=10)

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


def deployments_by_component(spec: dict[str, Any], prefix: str) -> dict[str, list[str]]:
    """Names of the deployments whose flow function starts with `prefix`, per component module."""
    found: dict[str, list[str]] = {}
    for deployment in spec.get("deployments", []):
        module, function = deployment["entrypoint"].split(":")
        if function.startswith(prefix):
            found.setdefault(Path(module).stem, []).append(deployment["name"])
    return found


def validation_deployments(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Validation deployment names per component ('gcs' -> ['gcs-validate']) from the spec."""
    return deployments_by_component(spec, "validate_")


# -- blocks and settings -------------------------------------------------------------------
def register_block_types() -> list[str]:
    """Register Backstop's block types (and prefect-gcp's credentials) with the server."""
    from prefect_gcp import GcpCredentials

    registered = []
    for block in (BackstopSettings, GcpCredentials):
        block.register_type_and_schema()
        registered.append(block.get_block_type_slug())
    return registered


def default_project() -> str:
    """The project a fresh install's settings name: BACKSTOP_PROJECT (the local platform sets it),
    else GOOGLE_CLOUD_PROJECT; ConfigError when neither is set."""
    project = os.environ.get("BACKSTOP_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise ConfigError(
            "no settings saved yet and no project named: set GOOGLE_CLOUD_PROJECT (or BACKSTOP_PROJECT), "
            "or pass --project to `backstop bootstrap`"
        )
    return project


def default_settings(project: str, bucket: str = "backstop-backups") -> BackstopSettings:
    """The settings document a fresh install starts from (edit it in the UI)."""
    return BackstopSettings(project=project, backup_bucket=bucket, secondary_bucket=f"{bucket}-dr")


def save_default_settings(
    settings: BackstopSettings | None = None, name: str = DEFAULT_BLOCK_NAME, overwrite: bool = False
) -> bool:
    """Save `settings` (default: default_settings) as block `name` unless it exists; True when saved."""
    if not overwrite:
        try:
            BackstopSettings.load(name)
            return False
        except ValueError:
            pass
    (settings or default_settings(default_project())).save(name, overwrite=True)
    return True


def save_first_setup(
    name: str,
    project: str | None = None,
    backup_bucket: str | None = None,
    secondary_bucket: str | None = None,
    location: str | None = None,
) -> bool:
    """Save settings `name` with these fields (a first setup against Google Cloud), keeping every other
    field of an existing block; True when saved. A new block needs a project and a backup bucket."""
    from backstop.core.names import check_bucket

    values: dict[str, Any] = {
        key: value
        for key, value in {
            "project": project,
            "backup_bucket": backup_bucket and check_bucket(backup_bucket),
            "secondary_bucket": secondary_bucket and check_bucket(secondary_bucket),
            "location": location,
        }.items()
        if value
    }
    current: Any
    try:
        current = BackstopSettings.load(name)
    except ValueError:
        current = None
    if current is None:
        if not (project and backup_bucket):
            raise InvalidInput(
                f"settings block 'backstop-settings/{name}' does not exist yet: give --project and --backup-bucket"
            )
        settings = BackstopSettings(**values)
    else:
        settings = current.model_copy(update=values)
    settings.save(name, overwrite=True)
    return True


# -- notifications -------------------------------------------------------------------------
def parse_notify(notify: str) -> tuple[str, str]:
    """('slack' | 'webhook', URL) of a --notify value; InvalidInput otherwise."""
    kind, _, url = notify.partition(":")
    if kind not in ("slack", "webhook") or not url.startswith(("http://", "https://")):
        raise InvalidInput(f"--notify {notify!r}: expected slack:URL or webhook:URL with an http(s) URL")
    return kind, url


def configure_notifications(settings_block: str, notify: str | None = None) -> str | None:
    """Save the notification block and name it in the settings; returns its reference (or None).

    `notify` is 'slack:URL' (a Slack incoming webhook) or 'webhook:URL' (JSON {source, subject, text}).
    Without it the settings keep their notify_block; when they have none and the local platform's
    alert receiver runs (BACKSTOP_ALERTS_URL), alerts go to that receiver.
    """
    from blocks.notifications import save_slack_block, save_webhook_block
    from blocks.settings import load_settings

    settings = load_settings(settings_block)
    local = os.environ.get("BACKSTOP_ALERTS_HOOK_URL")
    local_reference = f"custom-webhook/{LOCAL_ALERTS_BLOCK}"
    if notify:
        kind, url = parse_notify(notify)
        reference = (
            save_slack_block(NOTIFY_BLOCK, url) if kind == "slack" else save_webhook_block(NOTIFY_BLOCK, url)
        )
    elif local and settings.notify_block in (None, local_reference):
        reference = save_webhook_block(LOCAL_ALERTS_BLOCK, local)
    else:
        return settings.notify_block
    if settings.notify_block != reference:
        settings.notify_block = reference
        settings.save(settings_block, overwrite=True)
    return reference


# -- work pool -----------------------------------------------------------------------------
def job_environment() -> dict[str, str]:
    """The emulator endpoints of this environment, for flow runs on the work pool (empty on Google Cloud)."""
    return {key: os.environ[key] for key in (*EMULATOR_ENV, *EXTRA_JOB_ENV) if os.environ.get(key)}


def with_job_env(template: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """`template` with `env` as the default job environment; the endpoint variables Backstop manages
    are replaced, any other variable a person added in the UI is kept."""
    updated = copy.deepcopy(template)
    prop = updated.setdefault("variables", {}).setdefault("properties", {}).setdefault("env", {})
    default = {
        k: v for k, v in (prop.get("default") or {}).items() if k not in (*EMULATOR_ENV, *EXTRA_JOB_ENV)
    }
    default.update(env)
    if default:
        prop["default"] = default
    else:
        prop.pop("default", None)
    return updated


def ensure_work_pool(name: str = WORK_POOL, env: dict[str, str] | None = None) -> bool:
    """Create the process work pool `name` if missing, and set its job environment to `env`
    (default: job_environment()); True when created."""
    from prefect.workers.process import ProcessWorker

    env = job_environment() if env is None else env
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = with_job_env(ProcessWorker.get_default_base_job_template(), env)
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
                return True
            except ObjectAlreadyExists:  # a worker starting at the same time made it
                pool = client.read_work_pool(name)
        wanted = with_job_env(pool.base_job_template, env)
        if wanted != pool.base_job_template:
            client.update_work_pool(name, WorkPoolUpdate(base_job_template=wanted))
    return False


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


# -- the whole thing -----------------------------------------------------------------------
def bootstrap(
    settings_block: str = DEFAULT_BLOCK_NAME,
    settings: BackstopSettings | None = None,
    notify: str | None = None,
    first_setup: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Register block types, save settings (defaults when missing, or `first_setup`'s project /
    buckets / location), set up the notification channel, create the backup buckets (when missing)
    and the work pool with this environment's endpoints."""
    if notify:
        parse_notify(notify)  # a typo fails before anything is changed
    block_types = register_block_types()
    if first_setup and any(first_setup.values()):
        saved = save_first_setup(settings_block, **first_setup)
    else:
        saved = save_default_settings(settings, settings_block)
    notify_block = configure_notifications(settings_block, notify)
    return {
        "block_types": block_types,
        "settings_saved": saved,
        "notify_block": notify_block
        or "none: alerts need `backstop bootstrap --notify slack:URL|webhook:URL`",
        "backup_buckets_created": ensure_backup_buckets(settings_block),
        "work_pool_created": ensure_work_pool(),
        "work_pool_env": sorted(job_environment()),
    }


def ensure_backup_buckets(settings_block: str = DEFAULT_BLOCK_NAME) -> list[str]:
    """Create the primary and secondary backup buckets named by the settings if they are missing,
    hardened (`backstop harden`: uniform access, no public access, soft delete, retention policy)."""
    from blocks.settings import load_settings
    from tasks.operations.harden import harden_bucket, shortest_retention_days
    from tasks.storage.bucket import open_store

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
    settings_block: str = DEFAULT_BLOCK_NAME,
    api_url: str | None = None,
    automations: bool = True,
    notify: str | None = None,
) -> dict[str, Any]:
    """Bootstrap, deploy every deployment of prefect.yaml, then create the automations.

    Deployments whose entrypoint file does not exist are listed in the result instead of failing
    the whole deploy. Automations are skipped (with a note) when the settings name no
    notification block yet.
    """
    from blocks.settings import load_settings

    result = bootstrap(settings_block, notify=notify)
    ready, missing = deployable(load_spec())
    # Deploy what exists; a component whose flows are not written yet is named, not fatal.
    result["deploy_output"] = run_prefect_deploy(api_url, names=None if not missing else ready)
    result["deployed"] = ready
    result["not_deployed_missing_entrypoint"] = missing
    settings = load_settings(settings_block)
    if automations and settings.notify_block:
        result["automations"] = {name: str(i) for name, i in create_automations(settings).items()}
    else:
        result["automations"] = (
            "skipped: no notification channel; run `backstop deploy --notify slack:URL` (or webhook:URL)"
        )
    return result
