"""Deleting what prune's sweep found unreferenced (tasks/operations/prune.py), in batches: here, or
as units on the settings' task runner (tasks/engine/units.py), each batch on its process's copy
workers. A unit returns counts and at most SHOWN named problems, never the keys it deleted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tasks.storage.bucket import BackupStore
from tasks.storage.copies import copy_workers, run_all
from tasks.storage.google_api import batch_groups
from tasks.storage.object_lock import retained_until
from tasks.storage.objects import DeleteOutcome
from tasks.storage.parallel import Batches

SHOWN = 1000  # objects kept or not deleted a batch names (the others are counted)


@dataclass
class Deleted:
    """What deleting one batch did: objects and bytes deleted, objects the bucket kept and failures
    (at most SHOWN of each named, then how many more)."""

    objects: int = 0
    bytes: int = 0
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def hold_reason(blob: Any, now: datetime) -> str | None:
    """Why Cloud Storage will refuse to delete this object now, if its listing says so."""
    if getattr(blob, "temporary_hold", None):
        return "temporary hold"
    if getattr(blob, "event_based_hold", None):
        return "event-based hold"
    until = retained_until(blob)
    if until is not None and until > now:
        return f"object retention until {until.isoformat()}"
    until = getattr(blob, "retention_expiration_time", None)
    if until is not None and until > now:
        return f"retention policy until {until.isoformat()}"
    return None


def delete_listed(store: BackupStore, blobs: dict[str, Any], now: datetime, batches: Batches) -> Deleted:
    """Delete `blobs` (key -> listed blob) in batches as `batches` runs them; those whose listing
    says the bucket protects them (a hold, a retention) are not sent a delete but named as kept."""
    total, deletable = Deleted(), {}
    for key, blob in blobs.items():
        reason = hold_reason(blob, now)
        if reason:
            total.kept.append(f"{store.where(key)}: kept by the bucket ({reason})")
        else:
            deletable[key] = blob

    def done(deleted: Deleted) -> None:
        total.objects += deleted.objects
        total.bytes += deleted.bytes
        total.kept += deleted.kept
        total.failed += deleted.failed

    items = ([key, int(getattr(deletable[key], "size", 0) or 0)] for key in sorted(deletable))
    batches.run(functools.partial(delete_batch, store), items, done)
    return total


def delete_batch(store: BackupStore, items: list[list[Any]]) -> Deleted:
    """Delete the [key, size] `items` on the process's copy workers (a unit of prune's sweep)."""
    sizes = {key: size for key, size in items}
    outcome = DeleteOutcome.of(
        r for done in run_all(store.delete_many, batch_groups(list(sizes), copy_workers())) for r in done
    )
    kept = [f"{store.where(k)}: kept by the bucket ({why})" for k, why in outcome.kept.items()]
    failed = list(outcome.failed.values())
    return Deleted(
        len(outcome.deleted),
        sum(sizes[key] for key in outcome.deleted),
        _shown(kept, "kept by the bucket"),
        _shown(failed, "not deleted"),
    )


def _shown(lines: list[str], what: str) -> list[str]:
    return lines[:SHOWN] + ([f"and {len(lines) - SHOWN} more objects {what}"] if len(lines) > SHOWN else [])
