"""Approval before a restore replaces or deletes data in an original location.

The lifecycle calls `require_approval(description)` before such a restore writes anything. An
approval is an answer, never a flow parameter:
- from the command line, `--yes` grants it for that command (`cli_approval`), recorded with the
  OS user's name;
- in a flow run (a deployment started from the UI or on schedule) the run pauses with a form that
  defaults to deny; the answer and the name the approver typed are recorded;
- outside both there is no one to ask, so it is refused.
The returned text ("approved with --yes by alice") goes into the restore's record and artifact.
"""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Iterator
from contextvars import ContextVar

from prefect import get_run_logger, pause_flow_run
from prefect.context import FlowRunContext
from prefect.input import RunInput
from pydantic import Field

from backstop.core.errors import Conflict

DEFAULT_TIMEOUT_SECONDS = 3600
_CLI_APPROVAL: ContextVar[str | None] = ContextVar("backstop_cli_approval", default=None)


class Approval(RunInput):
    """Tick 'approve' to let the restore replace or delete the original data."""

    approve: bool = Field(default=False, description="Allow this restore to change the original data.")
    approver: str = Field(default="", description="Your name, recorded with the restore.")


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown user"


@contextlib.contextmanager
def cli_approval(granted: bool) -> Iterator[None]:
    """Within the block, restores are approved (the CLI's --yes) when `granted`, else refused at
    once: a command line never waits for an answer in the UI."""
    token = _CLI_APPROVAL.set(f"approved with --yes by {os_user()}" if granted else "")
    try:
        yield
    finally:
        _CLI_APPROVAL.reset(token)


@contextlib.contextmanager
def covered_by(approval: str) -> Iterator[None]:
    """Within the block, restores count as approved by `approval`: one approval given for a whole
    plan (a platform recovery) covers each of its steps, and each step's record names it."""
    token = _CLI_APPROVAL.set(approval)
    try:
        yield
    finally:
        _CLI_APPROVAL.reset(token)


def require_approval(
    description: str, yes: bool = False, timeout: int = DEFAULT_TIMEOUT_SECONDS, poll_interval: int = 10
) -> str:
    """Return who approved the change described by `description`; raise Conflict otherwise.

    Args:
        description: what would be changed, shown in the UI and in the error.
        yes: approval given by the caller itself (a test or an operator's script).
        timeout: seconds to wait for an answer in the UI before denying.
        poll_interval: seconds between checks for an answer.

    Raises:
        Conflict: not approved, denied, timed out, or no one to ask.
    """
    cli = _CLI_APPROVAL.get()
    if cli or yes:
        return cli or f"approved by the caller ({os_user()})"
    if cli == "" or FlowRunContext.get() is None:
        raise Conflict(f"{description}: not approved (pass --yes to allow it; see --dry-run first)")
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
        raise Conflict(f"{description}: approval denied{f' by {answer.approver}' if answer.approver else ''}")
    who = f"approved in the Prefect UI by {answer.approver or 'an unnamed user'}"
    get_run_logger().info("%s: %s", who, description)
    return who
