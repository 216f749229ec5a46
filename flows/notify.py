"""Send a notification through the block named in the settings (Slack, custom webhook, email)."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block

from backstop.core.errors import ConfigError
from blocks.settings import DEFAULT_BLOCK_NAME, load_settings


def load_notification_block(reference: str) -> Any:
    """The notification block '<block-type-slug>/<block-name>'; ConfigError names a missing one."""
    if reference.count("/") != 1:
        raise ConfigError(
            f"notify_block {reference!r} must be '<block-type-slug>/<block-name>', e.g. 'slack-webhook/ops'"
        )
    try:
        block = Block.load(reference)
    except ValueError as exc:
        raise ConfigError(
            f"notification block {reference!r} not found: create it with blocks.notifications"
        ) from exc
    if not callable(getattr(block, "notify", None)):
        raise ConfigError(f"block {reference!r} is not a notification block")
    return block


def send_notification(
    subject: str, body: str, settings_block: str = DEFAULT_BLOCK_NAME, notify_block: str | None = None
) -> bool:
    """Notify through `notify_block`, or `settings.notify_block`; False when none is configured.

    Args:
        subject: one-line subject.
        body: message text (never secrets: it ends up in chat and mail).
        settings_block: settings block naming the notification block.
        notify_block: '<block-type-slug>/<block-name>' to use instead of the settings.
    """
    reference = notify_block or load_settings(settings_block).notify_block
    if not reference:
        return False
    load_notification_block(reference).notify(body=body, subject=subject)
    return True
