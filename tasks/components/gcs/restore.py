"""Restoring Cloud Storage objects from a backup, streamed: plan against the target, verify after.

A backup of millions of objects is never held whole: its entries are streamed from the manifest
(a chunk at a time), the target bucket's listing is spooled to disk once, and each batch of
entries is decided against it. What is to be written is spooled too; the plan keeps only counts,
the items a person must see (replacements, blocked ones) and a bounded sample of the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from backstop.core.manifest import ManifestEntry
from tasks.components.gcs.plan import Action, plan_restore
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors
from tasks.storage.parallel import batched
from tasks.storage.spool import EntrySpool, KeySpool

BATCH = 5000  # entries decided at a time
SHOWN = 1000  # creates / unchanged listed one by one in a plan (all are counted)
CHANGE = {"create": "create", "overwrite": "replace", "unchanged": "unchanged"}


def target_listing(client: Any, bucket: str) -> KeySpool:
    """What `bucket` holds, name -> (size, crc32c), spooled to disk (empty when it does not exist)."""
    spool = KeySpool()
    try:
        with converted_errors(f"target bucket gs://{bucket}"):
            if client.lookup_bucket(bucket, timeout=TIMEOUT, retry=RETRY) is not None:
                listing = client.list_blobs(bucket, timeout=TIMEOUT, retry=RETRY)
                spool.add((b.name, int(b.size or 0), b.crc32c, None) for b in listing)
    except BaseException:
        spool.close()
        raise
    return spool


def decide(
    there: KeySpool, entries: Iterable[ManifestEntry], overwrite: bool
) -> Iterator[tuple[ManifestEntry, Action]]:
    """Per entry, in batches: create it, leave it, overwrite it (asked to) or conflict."""
    for batch in batched(entries, BATCH):
        held = {k: (v[0], v[1]) for k, v in there.lookup([e.name for e in batch]).items()}
        yield from plan_restore(batch, held, overwrite)


@dataclass
class Planned:
    """A streamed restore plan: what to write (spooled), counts, and the actions worth listing."""

    creates: EntrySpool = field(default_factory=EntrySpool)
    replaces: EntrySpool = field(default_factory=EntrySpool)
    counts: Counter[str] = field(default_factory=Counter)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def close(self) -> None:
        self.creates.close()
        self.replaces.close()


def plan_bucket(client: Any, bucket: str, entries: Iterable[ManifestEntry]) -> Planned:
    """Decide every entry against `bucket`'s current content (see the module docstring)."""
    planned = Planned()
    try:
        with target_listing(client, bucket) as there:
            for batch in batched(decide(there, entries, overwrite=True), BATCH):
                planned.creates.add(e for e, a in batch if a == "create")
                planned.replaces.add(e for e, a in batch if a == "overwrite")
                for entry, action in batch:
                    change = CHANGE[action]
                    planned.counts[change] += 1
                    if change == "replace" or planned.counts[change] <= SHOWN:
                        planned.actions.append({"name": entry.name, "change": change, "bytes": entry.size})
    except BaseException:
        planned.close()
        raise
    return planned


def verify_bucket(client: Any, bucket: str, entries: Iterable[ManifestEntry]) -> list[str]:
    """Differences between `bucket` and the entries (missing objects, other size or crc32c)."""
    problems: list[str] = []
    with target_listing(client, bucket) as there:
        for batch in batched(entries, BATCH):
            held = there.lookup([e.name for e in batch])
            for entry in batch:
                got = held.get(entry.name)
                if got is None:
                    problems.append(f"missing in gs://{bucket}: {entry.name}")
                elif got[:2] != (entry.size, entry.crc32c):
                    problems.append(
                        f"differs in gs://{bucket}: {entry.name} {got[:2]} vs backup {(entry.size, entry.crc32c)}"
                    )
    return problems
