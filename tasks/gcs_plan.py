"""Pure planning for Cloud Storage backups and restores: no Prefect, no I/O.

The backup store is keyed by generation: `pool/gcs/<bucket>/<spread>/<generation>/<name>` holds
exactly one content for ever, because a Cloud Storage generation is immutable. So an incremental
backup copies only generations the pool lacks, every manifest still lists its full object set, and
deleting an older backup never breaks a newer one (prune sweeps only keys no manifest references).

`<spread>` is 4 hex digits of a hash of bucket, name and generation: a generation is a microsecond
timestamp, so keys starting with it would put all new data into one hot key range, which Cloud
Storage spreads over its servers slowly. Backups written before the spread (the older layout
`pool/gcs/<bucket>/<generation>/<name>`) stay readable: every manifest entry names its
`stored_key`, and everything that lists the pool lists `pool_prefix(bucket)`, which holds both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from backstop.core.manifest import BackupManifest, ManifestEntry

# Object properties that a restore recreates (besides custom metadata).
KEPT_PROPERTIES = (
    "content_type",
    "cache_control",
    "content_encoding",
    "content_disposition",
    "content_language",
)


@dataclass(frozen=True)
class SourceObject:
    """One live object of a source bucket, as listed."""

    name: str
    generation: int
    size: int
    crc32c: str | None
    md5: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def is_placeholder(self) -> bool:
        """A zero-byte 'folder/' marker made by consoles; not data."""
        return self.name.endswith("/") and self.size == 0


def pool_prefix(bucket: str) -> str:
    return f"pool/gcs/{bucket}/"


def pool_key(bucket: str, name: str, generation: int) -> str:
    """Where the pool keeps one source generation (see the module docstring)."""
    spread = hashlib.sha256(f"{bucket}\n{name}\n{generation}".encode()).hexdigest()[:4]
    return f"{pool_prefix(bucket)}{spread}/{generation}/{name}"


def entry_for(obj: SourceObject, stored_key: str) -> ManifestEntry:
    return ManifestEntry(
        name=obj.name,
        stored_key=stored_key,
        size=obj.size,
        crc32c=obj.crc32c,
        md5=obj.md5,
        generation=obj.generation,
        metadata={"properties": dict(obj.properties), "custom": dict(obj.metadata)},
    )


@dataclass
class BackupPlan:
    """What a backup must copy, and what it can reuse from the pool."""

    to_copy: list[tuple[SourceObject, str]] = field(default_factory=list)
    reused: list[ManifestEntry] = field(default_factory=list)
    placeholders: int = 0

    @property
    def generations(self) -> dict[str, int | None]:
        """The generation listed for each object name."""
        listed: dict[str, int | None] = {obj.name: obj.generation for obj, _ in self.to_copy}
        listed.update({entry.name: entry.generation for entry in self.reused})
        return listed

    @property
    def copy_bytes(self) -> int:
        return sum(obj.size for obj, _ in self.to_copy)


def plan_backup(
    objects: Iterable[SourceObject],
    bucket: str,
    previous: BackupManifest | None,
    pooled: dict[str, tuple[int, str | None]],
) -> BackupPlan:
    """Decide per object: reuse a stored copy, or copy it into the pool.

    An object is reused when the pool already holds a copy with the same size and crc32c, found
    either by its own generation, or through the previous backup's entry for the same name with
    the same size, crc32c and metadata (content rewritten unchanged under a new generation). The
    stored copy then carries exactly the object's metadata, so a restore is one server-side copy.

    Args:
        objects: the live objects of the source.
        bucket: the source bucket name.
        previous: the newest committed backup of this bucket, if any.
        pooled: what the pool holds now: stored key -> (size, crc32c).
    """
    by_name = {e.name: e for e in previous.entries} if previous else {}
    plan = BackupPlan()
    for obj in objects:
        if obj.is_placeholder:
            plan.placeholders += 1
            continue
        own = pool_key(bucket, obj.name, obj.generation)
        if pooled.get(own) == (obj.size, obj.crc32c):
            plan.reused.append(entry_for(obj, own))
            continue
        before = by_name.get(obj.name)
        if (
            before is not None
            and before.size == obj.size
            and before.crc32c == obj.crc32c
            and obj.crc32c is not None
            and pooled.get(before.stored_key) == (obj.size, obj.crc32c)
            and before.metadata == entry_for(obj, own).metadata
        ):
            plan.reused.append(entry_for(obj, before.stored_key))
            continue
        plan.to_copy.append((obj, own))
    return plan


def batches(items: list[Any], size: int) -> list[list[Any]]:
    """Split `items` into batches of at most `size` (one Prefect task each)."""
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


Action = Literal["create", "overwrite", "unchanged", "conflict"]


def plan_restore(
    entries: Iterable[ManifestEntry],
    existing: dict[str, tuple[int, str | None]],
    overwrite: bool,
) -> list[tuple[ManifestEntry, Action]]:
    """Per entry: create it, leave it (same content there), overwrite it (asked to) or conflict."""
    plan: list[tuple[ManifestEntry, Action]] = []
    for entry in entries:
        there = existing.get(entry.name)
        if there is None:
            plan.append((entry, "create"))
        elif there == (entry.size, entry.crc32c):
            plan.append((entry, "unchanged"))
        else:
            plan.append((entry, "overwrite" if overwrite else "conflict"))
    return plan


def select_entries(entries: list[ManifestEntry], only: list[str] | None) -> list[ManifestEntry]:
    """Entries named in `only`: an exact object name, or a prefix ending in '/' or '*'."""
    if not only:
        return list(entries)
    chosen = []
    for entry in entries:
        for part in only:
            if part.endswith(("/", "*")) and entry.name.startswith(part.rstrip("*")) or entry.name == part:
                chosen.append(entry)
                break
    return chosen
