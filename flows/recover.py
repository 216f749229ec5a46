"""The `recover-platform` flow: recover every component as of a point in time (tasks/operations/recover.py).

Started from the UI (the deployment's parameter form) the recovery into the originals pauses for
one approval covering the whole plan (default deny); `backstop recover --yes` approves it from the
command line. Each step is a lifecycle restore (its write and verify run as Prefect tasks), the
plan and the outcome are artifacts, and the notification block gets a message at start and end.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext

from backstop.core.errors import BackstopError, ObjectiveBreached
from backstop.core.recovery import plan_rows, summary_lines
from backstop.core.report import joined
from blocks.settings import DEFAULT_BLOCK_NAME, load_settings
from flows.hooks import backstop_flow
from tasks.operations.recover import Notify, recover
from tasks.operations.recover_drill import platform_drill


def _who() -> str:
    context = FlowRunContext.get()
    return f"Prefect flow run {context.flow_run.name}" if context and context.flow_run else ""


def _notifier(reference: str | None) -> Notify | None:
    """Send through the settings' notification block, when one is configured."""
    if not reference:
        return None
    from flows.notify import load_notification_block

    block = load_notification_block(reference)

    def notify(subject: str, body: str) -> None:
        block.notify(body=body, subject=subject)

    return notify


@backstop_flow(name="recover-platform")
def recover_platform(
    as_of: str = "",
    components: list[str] = [],  # noqa: B006 (the form's default; never changed)
    sources: list[str] = [],  # noqa: B006
    target_suffix: str = "",
    dry_run: bool = False,
    reason: str = "",
    resume: str = "",
    who: str = "",
    fail_on_error: bool = True,
    settings_block: str = DEFAULT_BLOCK_NAME,
    keep_newer: bool = False,
) -> dict[str, Any]:
    """Recover the platform as of `as_of`: per source the newest validated backup at or before it,
    restored in dependency order (configuration, BigQuery, Cloud Storage, Composer, GKE) and checked.

    Args:
        as_of: ISO time (or "now") to recover to (empty: give `resume`).
        components: components to recover (default: all).
        sources: only these sources (default: every configured source).
        target_suffix: restore into alternate targets named with this suffix (empty: the originals).
        dry_run: record and show the plan, restore nothing.
        reason: why the recovery is run (kept in the record and sent in the notifications).
        resume: an operation id to continue from its first incomplete step (empty: a new recovery).
        who: who runs it (default: this flow run).
        fail_on_error: fail the flow run when a step or a check fails.
        settings_block: name of the Backstop settings block.
        keep_newer: keep what appeared after `as_of` in the recovered scopes (objects, files, tables,
            Airflow items); by default it is deleted, so each source is exactly as it was at `as_of`.
    Recovering into the originals pauses for one approval (default deny) covering every step.
    """
    settings = load_settings(settings_block)
    log = get_run_logger()
    notify = _notifier(settings.notify_block)
    operation = recover(
        settings,
        as_of or None,
        components or None,
        sources or None,
        target_suffix or None,
        dry_run,
        reason=reason,
        resume=resume or None,
        who=who or _who(),
        notify=notify,
        log=log.info,
        keep_newer=keep_newer,
    )
    create_table_artifact(plan_rows(operation), key="recovery-plan", description="Recovery plan and steps")
    create_markdown_artifact("\n\n".join(summary_lines(operation)), key="recovery-outcome")
    if operation.outcome == "failed" and fail_on_error:
        raise BackstopError(operation.message)
    return operation.model_dump(mode="json")


@backstop_flow(name="platform-drill")
def drill_platform(
    components: list[str] = [],  # noqa: B006 (the form's default; never changed)
    who: str = "",
    fail_on_error: bool = True,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> dict[str, Any]:
    """Recover every source as of now into scratch targets, check, time against the platform RTO
    (the longest RTO of the components recovered), and remove the scratch targets.

    Args:
        components: components to drill (default: all).
        who: who runs it (default: this flow run).
        fail_on_error: fail the flow run when the drill fails or is over the RTO.
        settings_block: name of the Backstop settings block.
    """
    settings = load_settings(settings_block)
    result = platform_drill(
        settings,
        components or None,
        notify=_notifier(settings.notify_block),
        log=get_run_logger().info,
        who=who or _who(),
    )
    shown = {k: v for k, v in result.items() if k not in ("problems", "targets")}
    create_table_artifact([shown], key="platform-drill", description="Platform drill")
    if not result["passed"] and fail_on_error:
        raise ObjectiveBreached("platform drill failed: " + joined(result["problems"]))
    return result
