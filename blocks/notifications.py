"""Create and save the notification blocks Backstop alerts through (Slack, custom webhook, email).

`settings.notify_block` names one of them as '<block-type-slug>/<block-name>'; hooks and the
bootstrap's automations send through it. Each helper saves the block and returns that reference.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.notifications import CustomWebhookNotificationBlock, SendgridEmail, SlackWebhook
from prefect.types import SecretDict
from pydantic import SecretStr

# What a custom webhook receives: {{subject}} and {{body}} are filled in by Prefect.
WEBHOOK_JSON: dict[str, Any] = {"source": "backstop", "subject": "{{subject}}", "text": "{{body}}"}


def reference(block: Any, name: str) -> str:
    """'<block-type-slug>/<name>' for a block class or instance."""
    return f"{block.get_block_type_slug()}/{name}"


def save_webhook_block(
    name: str,
    url: str,
    headers: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    overwrite: bool = True,
) -> str:
    """Save a CustomWebhookNotificationBlock posting JSON {source, subject, text} to `url`.

    Args:
        name: block name.
        url: the webhook URL (a chat incoming webhook, an alert manager, a local receiver).
        headers: extra headers; use `{{token}}` placeholders filled from `secrets`.
        secrets: values kept as secrets in the block (never shown in the UI or logs).
        overwrite: replace a block of the same name.

    Returns:
        The block reference for `settings.notify_block`.
    """
    block = CustomWebhookNotificationBlock(
        name=name,
        url=url,
        json_data=dict(WEBHOOK_JSON),
        headers=headers,
        cookies=None,
        secrets=SecretDict(secrets or {}),
    )
    block.save(name, overwrite=overwrite)
    return reference(CustomWebhookNotificationBlock, name)


def save_slack_block(name: str, webhook_url: str, overwrite: bool = True) -> str:
    """Save a Slack incoming-webhook block (Prefect core's SlackWebhook); returns its reference."""
    SlackWebhook(url=SecretStr(webhook_url)).save(name, overwrite=overwrite)
    return reference(SlackWebhook, name)


def save_email_block(name: str, api_key: str, sender: str, to: list[str], overwrite: bool = True) -> str:
    """Save an email block (SendGrid, the email block Prefect core ships); returns its reference."""
    SendgridEmail(api_key=SecretStr(api_key), sender_email=sender, to_emails=to).save(
        name, overwrite=overwrite
    )
    return reference(SendgridEmail, name)
