"""Block types and settings for bootstrap: registering Backstop's block types, saving the default
settings (or a first setup's) and the notification channel the settings name (deployments/bootstrap.py)."""

from __future__ import annotations

import os
from typing import Any

from backstop.core.errors import ConfigError, InvalidInput
from blocks.settings import DEFAULT_BLOCK_NAME, BackstopSettings

NOTIFY_BLOCK = "backstop-alerts"  # the block `--notify` saves
LOCAL_ALERTS_BLOCK = "backstop-local-alerts"  # the local platform's receiver


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


# Where a fresh install (the local platform's) keeps its secondary copy: another location than the
# primary's default ("US"), in the same country. A first setup names its own (--secondary-location).
DEFAULT_SECONDARY_LOCATION = "US-EAST1"


def default_settings(project: str, bucket: str = "backstop-backups") -> BackstopSettings:
    """The settings document a fresh install starts from (edit it in the UI)."""
    return BackstopSettings(
        project=project,
        backup_bucket=bucket,
        secondary_bucket=f"{bucket}-dr",
        secondary_location=DEFAULT_SECONDARY_LOCATION,
    )


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
    secondary_location: str | None = None,
) -> bool:
    """Save settings `name` with these fields (a first setup against Google Cloud), keeping every other
    field of an existing block; True when saved. A new block needs a project and a backup bucket, and
    a secondary bucket a location other than the primary's (InvalidInput, nothing saved, otherwise)."""
    from backstop.core.names import check_bucket

    values: dict[str, Any] = {
        key: value
        for key, value in {
            "project": project,
            "backup_bucket": backup_bucket and check_bucket(backup_bucket),
            "secondary_bucket": secondary_bucket and check_bucket(secondary_bucket),
            "location": location,
            "secondary_location": secondary_location,
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
    _check_secondary_location(settings)
    settings.save(name, overwrite=True)
    return True


def _check_secondary_location(settings: BackstopSettings) -> None:
    """A secondary bucket is for the loss of the primary's region: refuse one bootstrap would create
    where the primary is."""
    if not settings.secondary_bucket:
        return
    where = (settings.secondary_location or "").upper()
    if not where or where == settings.location.upper():
        raise InvalidInput(
            f"secondary bucket {settings.secondary_bucket!r} needs --secondary-location, another location "
            f"than the primary's ({settings.location}): a copy in the same location does not survive its loss"
        )


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
