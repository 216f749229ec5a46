"""Re-verification of kept backups: which stored objects a run re-reads, and what it found. Pure.

Validation reads a backup once, when it is new; a byte that rots in a kept backup would otherwise be
found when someone needs it. Like restic's `check --read-data-subset n/t`, every stored object has a
fixed place on a ring [0, 1) (from a hash of its key, so an object shared by several backups has one
place); a run re-reads (downloads and checksums) the objects whose place lies in its window
[start, start + share) and the next run starts where it ended, so after 1/share runs every kept byte
was re-read. Sizes and checksums the bucket lists are compared for every object on every run, and
what a backup holds outside the bucket (a Backup for GKE backup, a BigQuery snapshot table) is
checked to still exist.

A run's report is stored at `verifications/<yyyy>/<mm>/<run_id>.json` in the backup bucket; the next
run takes its window's start from the newest report (one cursor per component) and health reads
when each source was last re-verified and what that found.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from backstop.core.errors import InvalidInput

VERIFY_PREFIX = "verifications/"


def position(key: str) -> float:
    """The fixed place of stored object `key` on the ring [0, 1)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def in_window(place: float, start: float, share: float) -> bool:
    """Whether `place` lies in [start, start + share) on the ring (wrapping past 1)."""
    if share >= 1:
        return True
    end = start + share
    return start <= place < end if end <= 1 else (place >= start or place < end - 1)


def share_for(period_days: float, every_days: float) -> float:
    """The share each run re-reads so that every kept byte is re-read within `period_days` when a
    run comes every `every_days`."""
    if period_days <= 0 or every_days <= 0:
        raise InvalidInput("re-verification period and interval must be > 0 days")
    return min(1.0, every_days / period_days)


def check_share(percent: float) -> float:
    """A share given in percent (0 < percent <= 100) as a fraction."""
    if not 0 < percent <= 100:
        raise InvalidInput(f"re-verification share must be > 0 and <= 100 percent, got {percent:g}")
    return percent / 100


class SourceResult(BaseModel):
    """What re-verifying the kept backups of one component / source found."""

    component: str
    source: str
    where: str = Field(default="primary", description="primary, or the secondary copy in another region.")
    backups: int = Field(default=0, description="Validated backups checked.")
    objects: int = Field(default=0, description="Stored objects compared with the bucket's listing.")
    read_back: int = Field(default=0, description="Stored objects downloaded and checksummed.")
    bytes_read: int = 0
    damaged: dict[str, list[str]] = Field(
        default_factory=dict, description="Backup id -> problems: marked invalid."
    )
    expired: dict[str, list[str]] = Field(
        default_factory=dict, description="Backup id -> data outside the bucket that is gone: marked expired."
    )

    @property
    def found(self) -> bool:
        return bool(self.damaged or self.expired)

    def problems(self) -> list[str]:
        """One line per backup marked invalid or expired."""
        name = f"{self.component}/{self.source}" + (" (secondary copy)" if self.where == "secondary" else "")
        lines = [f"{name} backup {b} damaged: {'; '.join(p[:3])}" for b, p in self.damaged.items()]
        lines += [f"{name} backup {b} expired: {'; '.join(p[:3])}" for b, p in self.expired.items()]
        return lines


class VerificationReport(BaseModel):
    """One re-verification run."""

    run_id: str
    at: datetime
    finished_at: datetime | None = None
    share: float = Field(gt=0, le=1, description="Share of the ring each component's window covered.")
    starts: dict[str, float] = Field(default_factory=dict, description="Window start per component.")
    sources: list[SourceResult] = Field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{VERIFY_PREFIX}{self.at.astimezone(UTC):%Y/%m}/{self.run_id}.json"

    def next_start(self, component: str) -> float | None:
        start = self.starts.get(component)
        return None if start is None else (start + self.share) % 1

    def problems(self) -> list[str]:
        return [line for s in self.sources for line in s.problems()]

    def totals(self) -> dict[str, int]:
        return {
            "sources": len(self.sources),
            "backups": sum(s.backups for s in self.sources),
            "objects": sum(s.objects for s in self.sources),
            "read_back": sum(s.read_back for s in self.sources),
            "bytes_read": sum(s.bytes_read for s in self.sources),
            "damaged": sum(len(s.damaged) for s in self.sources),
            "expired": sum(len(s.expired) for s in self.sources),
        }


def new_run_id(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}Z-verify-{secrets.token_hex(3)}"


def window_start(reports: Iterable[VerificationReport], component: str) -> float:
    """Where the next window of `component` starts: where its newest run's window ended, else 0."""
    for report in sorted(reports, key=lambda r: (r.at, r.run_id), reverse=True):
        start = report.next_start(component)
        if start is not None:
            return start
    return 0.0


def last_result(
    reports: Iterable[VerificationReport], component: str, source: str
) -> tuple[VerificationReport, SourceResult] | None:
    """The newest run that re-verified `component/source`, and what it found there (in the primary
    and the secondary copy: a damaged secondary copy is named "<backup id> (secondary copy)")."""
    for report in sorted(reports, key=lambda r: (r.at, r.run_id), reverse=True):
        found = [r for r in report.sources if (r.component, r.source) == (component, source)]
        if found:
            merged = found[0].model_copy(deep=True)
            for other in found[1:]:
                merged.damaged |= {f"{b} ({other.where} copy)": p for b, p in other.damaged.items()}
                merged.expired |= {f"{b} ({other.where} copy)": p for b, p in other.expired.items()}
            return report, merged
    return None
