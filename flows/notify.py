"""Send a notification through the block named in the settings (Slack, webhook, email)."""

from __future__ import annotations

from prefect.blocks.notifications import NotificationBlock

from blocks.settings import load_settings


def send_notification(subject: str, body: str, settings_block: str = "default") -> bool:
    """Notify through `settings.notify_block` ('<block-type-slug>/<name>'); False when none is set."""
    settings = load_settings(settings_block)
    if not settings.notify_block:
        return False
    block = NotificationBlock.load(settings.notify_block)
    block.notify(body=body, subject=subject)
    return True
