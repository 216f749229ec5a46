"""Optional credentials.

prefect-gcp's `GcpCredentials` calls `google.auth.default()` when it is constructed, which fails
where no credentials exist (the local platform, CI). So Backstop never constructs one itself; it
loads a saved block only when a block name is given, and otherwise lets clients use Application
Default Credentials, or anonymous credentials when an emulator variable is set.
"""

from __future__ import annotations

from typing import Any

from backstop.core.errors import ConfigError


def load_credentials(block_name: str | None) -> Any | None:
    """Return the google.auth credentials of the saved `GcpCredentials` block, or None."""
    if not block_name:
        return None
    from prefect_gcp import GcpCredentials

    try:
        block = GcpCredentials.load(block_name)
    except ValueError as exc:
        raise ConfigError(f"credentials block 'gcp-credentials/{block_name}' not found") from exc
    return block.get_credentials_from_service_account()
