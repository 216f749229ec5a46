"""Run records: what every backup, validation, restore, drill and prune run ended as. Pure.

A failed backup writes no manifest (a run without its manifest did not happen), so without a record
of its own a failure would be invisible to the health report and to `backstop list --all`. The
lifecycle writes one record per failed or abandoned run, and one per restore (a restore changes
data: who, what, where and the approval are kept). Records live in the backup bucket at
`runs/<component>/<source>/<yyyy>/<mm>/<dd>/<run_id>.json`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

RUNS_PREFIX = "runs/"

Kind = Literal["backup", "validate", "restore", "drill", "prune"]
Outcome = Literal["succeeded", "failed", "abandoned", "refused"]


class RunRecord(BaseModel):
    """The outcome of one run of one component / source."""

    run_id: str
    kind: Kind
    component: str
    source: str
    outcome: Outcome
    at: datetime
    backup_id: str | None = None
    error_kind: str | None = Field(default=None, description="Backstop error class, e.g. 'Unavailable'.")
    transient: bool = Field(default=False, description="Worth retrying: a service did not answer once.")
    message: str = ""
    flow_run_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def path(self) -> str:
        day = self.at.astimezone(UTC)
        return f"{RUNS_PREFIX}{self.component}/{self.source}/{day:%Y/%m/%d}/{self.run_id}.json"

    @property
    def failed(self) -> bool:
        """A refused run (a user's mistake in a hand-run restore) is no failure."""
        return self.outcome in ("failed", "abandoned")

    def row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "component": self.component,
            "source": self.source,
            "outcome": self.outcome,
            "at": self.at.isoformat(timespec="seconds"),
            "backup_id": self.backup_id,
            "error_kind": self.error_kind,
            "message": self.message,
        }


def new_run_id(kind: str, now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}Z-{kind}-{secrets.token_hex(3)}"


def is_transient(error_kind: str | None, message: str, previous: list[RunRecord]) -> bool:
    """An Unavailable error is transient unless the same error ended the previous run too."""
    if error_kind != "Unavailable":
        return False
    return not any(p.error_kind == error_kind and p.message == message for p in previous[:1])
