"""Approval before a restore overwrites originals: a pause with an input form in the Prefect UI.

Restore flows call `require_approval(description, yes)` before writing into the original
location. From the CLI `--yes` passes `yes=True`; a run started from the UI pauses and shows an
"approve" checkbox that defaults to deny. Outside a flow run there is no one to ask, so without
`yes` the call refuses.
"""

from __future__ import annotations

from prefect import get_run_logger, pause_flow_run
from prefect.context import FlowRunContext
from prefect.input import RunInput
from pydantic import Field

from backstop.errors import Conflict

DEFAULT_TIMEOUT_SECONDS = 3600


class Approval(RunInput):
    """Tick 'approve' to let the restore overwrite the original data."""

    approve: bool = Field(default=False, description="Allow this restore to overwrite the original data.")


def require_approval(
    description: str, yes: bool, timeout: int = DEFAULT_TIMEOUT_SECONDS, poll_interval: int = 10
) -> None:
    """Return when the overwrite described by `description` is approved; raise Conflict otherwise.

    Args:
        description: what would be overwritten, shown in the UI and in the error.
        yes: approval given up front (CLI `--yes`, or the flow parameter `overwrite_approved`).
        timeout: seconds to wait for an answer in the UI before denying.
        poll_interval: seconds between checks for an answer.

    Raises:
        Conflict: not approved, denied, timed out, or no flow run to pause.
    """
    if yes:
        return
    if FlowRunContext.get() is None:
        raise Conflict(f"{description}: not approved (pass --yes to overwrite)")
    get_run_logger().warning("waiting up to %d s for approval in the UI: %s", timeout, description)
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=f"Approve: {description}", approve=False),
            timeout=timeout,
            poll_interval=poll_interval,
        )
    except Exception as exc:  # FlowPauseTimeout and friends: no answer means no
        raise Conflict(f"{description}: not approved ({type(exc).__name__}: {exc})") from exc
    if not answer.approve:
        raise Conflict(f"{description}: approval denied")
    get_run_logger().info("approved: %s", description)


def approve_overwrite(what: str, overwrite: bool, dry_run: bool, into_original: bool, approved: bool) -> None:
    """Pause for approval (default deny) before a restore overwrites data where it came from.

    Args:
        what: the restore, e.g. "restore of backup X into dataset sales".
        overwrite: the restore may replace existing data.
        dry_run: nothing will be written (no approval needed).
        into_original: the target is the backed-up source itself.
        approved: approval given up front (CLI --yes, or the flow parameter).
    """
    if overwrite and not dry_run and into_original:
        require_approval(f"{what} overwrites data in the original location", yes=approved)
