"""Pure planning for Cloud Storage backups and restores: no Prefect, no I/O.

The backup store is keyed by generation: `pool/gcs/<bucket>/<spread>/<generation>/<name>` holds
exactly one content for ever, because a Cloud Storage generation is immutable. So an incremental
backup copies only what the previous backup does not already hold, every manifest still lists its
full object set, and deleting an older backup never breaks a newer one (prune sweeps only keys no
manifest references). Planning is a merge of two name-ordered streams (the source listing and the
previous manifest): its memory does not grow with the bucket.

`<spread>` is 4 hex digits of a hash of bucket, name and generation: a generation is a microsecond
timestamp, so keys starting with it would put all new data into one hot key range, which Cloud
Storage spreads over its servers slowly. Backups written before the spread (the older layout
`pool/gcs/<bucket>/<generation>/<name>`) stay readable: every manifest entry names its
`stored_key`, and everything that lists the pool lists `pool_prefix(bucket)`, which holds both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from backstop.core.manifest import ManifestEntry
from tasks.storage.parallel import growing_batches

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
class PlanCounts:
    """What a streaming plan has decided so far (filled as its units are consumed)."""

    copied: int = 0
    copy_bytes: int = 0
    reused: int = 0
    placeholders: int = 0
    out_of_order: int = 0


def reusable(obj: SourceObject, before: ManifestEntry | None) -> str | None:
    """The stored key of the previous backup's copy of `obj` when it still holds `obj`, else None.

    The same generation is the same content for ever; a new generation with the same size, crc32c
    and metadata (content rewritten unchanged) reuses the stored copy too. What the previous
    backup lists, the pool holds: prune never removes a key a remaining backup references.
    """
    if before is None or before.name != obj.name:
        return None
    if before.generation == obj.generation and before.size == obj.size and before.crc32c == obj.crc32c:
        return before.stored_key
    same = before.size == obj.size and before.crc32c == obj.crc32c and obj.crc32c is not None
    if same and before.metadata == entry_for(obj, before.stored_key).metadata:
        return before.stored_key
    return None


def plan_backup(
    objects: Iterable[SourceObject],
    bucket: str,
    previous: Iterable[ManifestEntry],
    reused: Callable[[list[ManifestEntry]], None],
    counts: PlanCounts,
    batch_sizes: Iterator[int] | None = None,
) -> Iterator[list[tuple[SourceObject, str]]]:
    """Decide per object, streaming: reuse the previous backup's stored copy, or copy it.

    A merge of the source listing and the previous backup's entries, both in name order: neither
    is held whole. Reused entries go to `reused` a batch at a time; the objects to copy come out
    in batches (the backup's units) as soon as a batch fills, so copies start while the listing
    goes on. `batch_sizes` gives the size of each next batch (default `growing_batches()`).

    Args:
        objects: the live objects of the source, in name order.
        bucket: the source bucket name.
        previous: entries of earlier copies (the newest good backup of this bucket, and what
            unfinished runs copied), in name order; a name may come more than once.
        reused: called with each batch of entries kept from the previous backup.
        counts: filled with what was decided.
    """
    sizes = batch_sizes or growing_batches()
    size = next(sizes)
    before = iter(previous)
    ahead: ManifestEntry | None = next(before, None)
    last = ""
    kept: list[ManifestEntry] = []
    batch: list[tuple[SourceObject, str]] = []
    for obj in objects:
        if obj.name < last:  # not in name order: it is copied, never matched wrongly
            counts.out_of_order += 1
        last = max(last, obj.name)
        if obj.is_placeholder:
            counts.placeholders += 1
            continue
        while ahead is not None and ahead.name < obj.name:
            ahead = next(before, None)
        key = None
        while ahead is not None and ahead.name == obj.name:  # several earlier copies may be known
            key = key or reusable(obj, ahead)
            ahead = next(before, None)
        if key is not None:
            kept.append(entry_for(obj, key))
            counts.reused += 1
            if len(kept) >= 1000:
                reused(kept)
                kept = []
            continue
        batch.append((obj, pool_key(bucket, obj.name, obj.generation)))
        counts.copied += 1
        counts.copy_bytes += obj.size
        if len(batch) >= size:
            yield batch
            batch, size = [], next(sizes)
    if kept:
        reused(kept)
    if batch:
        yield batch


Action = Literal["create", "overwrite", "unchanged", "conflict"]
Held = tuple[int, str | None, str | None]  # (size, crc32c, kept metadata as JSON or None: not compared)


def kept_metadata(metadata: dict[str, Any]) -> str | None:
    """An entry's (or a listed object's) properties and custom metadata as one comparable string;
    None for an entry of a backup that kept no metadata (then only the bytes are compared)."""
    if "properties" not in metadata:
        return None
    kept = {"properties": metadata.get("properties") or {}, "custom": metadata.get("custom") or {}}
    return json.dumps(kept, sort_keys=True)


def listed_metadata(blob: Any) -> str | None:
    """What a listed object holds of the metadata a backup keeps (see `kept_metadata`)."""
    return kept_metadata(entry_for(source_object(blob), "").metadata)


def same_object(entry: ManifestEntry, there: Held) -> bool:
    """Whether an object there is the entry: same bytes and, where the backup kept it, same metadata."""
    if (there[0], there[1]) != (entry.size, entry.crc32c):
        return False
    wanted = kept_metadata(entry.metadata)
    return wanted is None or there[2] is None or wanted == there[2]


def plan_restore(
    entries: Iterable[ManifestEntry], existing: dict[str, Held], overwrite: bool
) -> list[tuple[ManifestEntry, Action]]:
    """Per entry: create it, leave it (same content and metadata there), overwrite it (asked to) or
    conflict."""
    plan: list[tuple[ManifestEntry, Action]] = []
    for entry in entries:
        there = existing.get(entry.name)
        if there is None:
            plan.append((entry, "create"))
        elif same_object(entry, there):
            plan.append((entry, "unchanged"))
        else:
            plan.append((entry, "overwrite" if overwrite else "conflict"))
    return plan


def in_scope(
    name: str, prefixes: list[str] | None, only: list[str] | None, exclude: list[str] | None = None
) -> bool:
    """Whether object `name` lies in what a backup of `prefixes` (all: None or []) restores when
    asked for `only` (object names or prefixes ending in '/' or '*', as `matching`), less the
    prefixes in `exclude` (left to newer backups of them): the scope an exact restore deletes in."""
    if prefixes and not any(name.startswith(p) for p in prefixes):
        return False
    return named(name, only, exclude)


def named(name: str, only: list[str] | None, exclude: list[str] | None = None) -> bool:
    """Whether object `name` is named in `only` (all when empty: an exact object name, or a prefix
    ending in '/' or '*') and lies under no prefix in `exclude`."""
    if exclude and name.startswith(tuple(exclude)):
        return False
    return not only or any(
        part.endswith(("/", "*")) and name.startswith(part.rstrip("*")) or name == part for part in only
    )


def matching(
    entries: Iterable[ManifestEntry], only: list[str] | None, exclude: list[str] | None = None
) -> Iterator[ManifestEntry]:
    """The entries `named` in `only` and under no prefix in `exclude` (streamed)."""
    if not only and not exclude:
        yield from entries
        return
    for entry in entries:
        if named(entry.name, only, exclude):
            yield entry


def source_object(blob: Any) -> SourceObject:
    properties = tuple((p, getattr(blob, p)) for p in KEPT_PROPERTIES if getattr(blob, p, None))
    return SourceObject(
        name=blob.name,
        generation=int(blob.generation),
        size=int(blob.size or 0),
        crc32c=blob.crc32c,
        md5=blob.md5_hash,
        properties=properties,
        metadata=tuple(sorted((blob.metadata or {}).items())),
    )
