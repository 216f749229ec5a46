"""Bootstrap a Prefect server for Backstop: block types, default settings, backup buckets, work pool,
deployments, automations.

`bootstrap()` registers the block types, saves a default settings document (when none exists), sets
up the notification channel (deployments/settings_blocks.py), creates the backup buckets (here) and
the process work pool (deployments/work_pool.py). `deploy()` then runs `prefect --no-prompt deploy`
on prefect.yaml (deployments/spec.py) and creates the automations (deployments/automations.py: a
failed or crashed run, and no validated backup of a component within its RPO).
Automations need a notification block: settings.notify_block ('<block-type-slug>/<name>'), which
`bootstrap(notify="slack:URL" | "webhook:URL")` creates; on the local platform it defaults to the
local alert receiver. The work pool's job environment carries the emulator endpoints of the
environment bootstrap runs in (none against Google Cloud), so worker-run flows reach what the CLI reaches.
"""

from __future__ import annotations

from typing import Any

from blocks.settings import DEFAULT_BLOCK_NAME, BackstopSettings
from deployments.automations import create_automations
from deployments.settings_blocks import (
    configure_notifications,
    parse_notify,
    register_block_types,
    save_default_settings,
    save_first_setup,
)
from deployments.spec import deployable, load_spec, run_prefect_deploy
from deployments.work_pool import ensure_work_pool, job_environment
from tasks.engine.progress import report


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
    what = f"deploying {len(ready)} deployments"
    report(what, 0, len(ready), unit="deployments")
    result["deploy_output"] = run_prefect_deploy(
        api_url,
        names=None if not missing else ready,
        deployed=lambda n: report(what, n, len(ready), unit="deployments"),
    )
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
