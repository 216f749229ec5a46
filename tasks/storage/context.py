"""Open the backup stores and clients a run needs from the settings."""

from __future__ import annotations

from typing import Any

from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from tasks.storage.bucket import BackupStore


def open_store(settings: BackstopSettings, secondary: bool = False, client: Any | None = None) -> BackupStore:
    """The primary (or secondary) backup store named by `settings`."""
    from backstop.core.errors import ConfigError

    bucket = settings.secondary_bucket if secondary else settings.backup_bucket
    if not bucket:
        raise ConfigError("settings name no secondary_bucket")
    # A key lives in one location: the secondary bucket (another region) needs its own.
    key = (settings.secondary_kms_key_name or settings.kms_key_name) if secondary else settings.kms_key_name
    return BackupStore(
        client or storage_client(settings.project),
        bucket,
        key,
        hold_validated=settings.hold_newest_validated,
    )
