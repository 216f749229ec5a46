"""Checking a backup's stored objects: each against its manifest entry (size, crc32c) from a
listing of the bucket, and a sample re-read (validation, re-verification, the restore's and the
secondary copy's checks before they trust a backup).
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from backstop.core.manifest import BackupManifest, ManifestEntry, Stored
from backstop.core.names import check_percent
from tasks.storage.bucket import BackupStore
from tasks.storage.copies import run_all
from tasks.storage.google_api import crc32c_b64
from tasks.storage.parallel import Batches, batched
from tasks.storage.spool import Held, KeySpool


def sample_indexes(count: int, percent: float, seed: int | None = None) -> set[int]:
    """Positions of a random `percent` of `count` entries (at least one when percent > 0)."""
    check_percent(percent, "sample percentage")
    if percent <= 0 or count <= 0:
        return set()
    chosen = max(1, round(count * percent / 100))
    return set(random.Random(seed).sample(range(count), min(chosen, count)))


@dataclass
class StoredCheck:
    """What checking a backup's stored objects found: problems, damaged entries by name, re-reads."""

    problems: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    read_back: int = 0
    checked: int = 0
    bytes_read: int = 0


# What a listing is asked for of each object: what the check compares, nothing more (a full
# object resource is ~700 bytes of JSON; a listing of millions of objects reads every one).
LISTED = "items(name,size,crc32c,kmsKeyName,retention),nextPageToken"


class StoredListing:
    """What `store` holds where some entries' stored keys live: each folder (the backup's, or its
    component's pool) listed once, when an entry in it is first looked up, and spooled to disk.

    A pool is listed in shards, one a first character of its keys after the pool's folder, all at
    once: a listing's pages come one after another, and a pool of 100M objects is 100,000 pages
    (~3 hours in a row at 100 ms a page). Its keys begin with a hex spread (or, in the older
    layout, a generation: tasks/components/gcs/plan.py), so 16 shards at most; a shard is listed
    when a key looked up lies in it, so every key looked up is in a listed shard."""

    def __init__(self, store: BackupStore, retention: bool = False) -> None:
        """`retention`: keep each object's retain-until too (`retained_until`)."""
        self.store, self.spool, self.prefixes, self.retention = store, KeySpool(), set[str](), retention

    def lookup(self, entries: Sequence[ManifestEntry | Stored]) -> dict[str, Held]:
        """stored key -> (size, crc32c, kms key) of each entry's stored object that exists."""
        wanted = {_listing_shard(e.stored_key) for e in entries} - self.prefixes
        shards = sorted(p for p in wanted if p.startswith("pool/"))
        listings = [self.store.iter_list(p, fields=LISTED) for p in sorted(wanted - set(shards))]
        if shards:
            listings.append(self.store.iter_list_shards(shards, fields=LISTED))
        for listing in listings:
            if self.retention:
                self.spool.add_retained(
                    (b.name, int(b.size or 0), b.crc32c, b.kms_key_name, _until(b)) for b in listing
                )
            else:
                self.spool.add((b.name, int(b.size or 0), b.crc32c, b.kms_key_name) for b in listing)
        self.prefixes |= wanted
        return self.spool.lookup([e.stored_key for e in entries])

    def retained_until(self, keys: list[str]) -> dict[str, datetime]:
        """stored key -> retain-until of those of `keys` listed (by `lookup`) with one."""
        return self.spool.retained_until(keys)

    def __enter__(self) -> StoredListing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.spool.close()


E = TypeVar("E", ManifestEntry, Stored)


def against_listing(
    store: BackupStore, entries: Iterable[E], listing: StoredListing | None = None
) -> Iterator[tuple[E, Held | None]]:
    """Each of `entries` with what `store` holds at its stored key (None: nothing), looked up
    BATCH entries at a time in one `StoredListing` (never the whole listing in memory): `listing`,
    kept open for the caller's next entries, or one of its own."""
    with contextlib.ExitStack() as own:
        listed = listing or own.enter_context(StoredListing(store))
        for batch in batched(entries, BATCH):
            held = listed.lookup(batch)
            for entry in batch:
                yield entry, held.get(entry.stored_key)


@dataclass
class ChunkOutcome:
    """What checking one manifest chunk against the listing found: entries checked, (name, problem)
    of each that differs, and [stored key, name, size, crc32c] of each chosen to re-read."""

    checked: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    chosen: list[list[Any]] = field(default_factory=list)


class SharedCheck:
    """What re-verifying several backups of one source shares in one run: one listing of the bucket
    (each folder listed once for all of them, not once a backup) and the outcome of each manifest
    chunk (a chunk the backups share, tasks/storage/manifests.py, is read and compared once; its
    outcome holds for each backup that has it). Only with a `read` that chooses by stored key."""

    def __init__(self, store: BackupStore) -> None:
        self.listing = StoredListing(store)
        self.chunks: dict[str, ChunkOutcome] = {}

    def __enter__(self) -> SharedCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.listing.spool.close()


def verify_stored(
    store: BackupStore,
    manifest: BackupManifest,
    sample_percent: float = 5.0,
    seed: int | None = None,
    read: Callable[[str], bool] | None = None,
    later: Callable[[list[Any]], None] | None = None,
    batches: Batches | None = None,
    shared: SharedCheck | None = None,
) -> StoredCheck:
    """Check every stored object of `manifest` against its entry; re-read a sample.

    Sizes and crc32c come from one listing per prefix (what the bucket says it holds, spooled to
    disk); the entries are streamed a chunk at a time; the sample is downloaded and its crc32c
    recomputed (what the bytes really are) in batches, as `batches` runs them (default: here; a
    validation's run them as units on the settings' task runner). Each problem names the entry and
    the stored object; `damaged` maps entry names to their problem. Memory stays flat in the entry
    count. `read(stored key)` chooses the objects to re-read instead of a random sample
    (re-verification's window); `later` takes each chosen [stored key, name, size, crc32c] instead
    of it being read here (re-verification reads what all the backups of a source chose at once:
    an object several backups share is downloaded once, and the units span backups). `shared`
    (with `read`): the listing and the chunk outcomes of the other backups of the run.
    """
    check = StoredCheck()
    sample = set() if read is not None else sample_indexes(manifest.entry_count, sample_percent, seed)
    listing = shared.listing if shared is not None else StoredListing(store)
    # A chunk's outcome is the same for every backup only when what is re-read depends on the key
    # alone (not on the entry's position, as a random sample does).
    known = shared.chunks if shared is not None and read is not None else None

    def damaged(name: str, problem: str) -> None:
        check.problems.append(problem)
        check.damaged[name] = problem

    def compare(entries: list[Stored]) -> ChunkOutcome:
        """One chunk's entries against the listing: what differs, and what to re-read."""
        out = ChunkOutcome()
        for entry, there in against_listing(store, entries, listing):
            where = f"{entry.name!r} ({store.where(entry.stored_key)})"
            if there is None:
                out.damaged.append((entry.name, f"missing: {where}"))
            elif there[0] != entry.size:
                problem = f"size differs: {where} holds {there[0]} bytes, manifest says {entry.size}"
                out.damaged.append((entry.name, problem))
            elif entry.crc32c and there[1] and there[1] != entry.crc32c:
                problem = f"checksum differs: {where} crc32c {there[1]}, manifest says {entry.crc32c}"
                out.damaged.append((entry.name, problem))
            elif read(entry.stored_key) if read is not None else check.checked + out.checked in sample:
                out.chosen.append([entry.stored_key, entry.name, entry.size, entry.crc32c])
            out.checked += 1
        return out

    def to_read() -> Generator[list[Any]]:
        """Every entry checked against the listing; [stored key, name, size, crc32c] of those to re-read."""
        for digest, entries in store.stored_by_chunk(manifest, known or ()):
            if entries is not None:
                outcome = compare(entries)
                if digest and known is not None:
                    known[digest] = outcome
            else:  # a chunk another backup of the run has (stored_by_chunk did not read it)
                assert known is not None and digest is not None
                outcome = known[digest]
            for name, problem in outcome.damaged:
                damaged(name, problem)
            check.checked += outcome.checked
            check.read_back += len(outcome.chosen)
            for item in outcome.chosen:
                if later is not None:
                    later(item)
                else:
                    yield item

    def done(found: ReadBack) -> None:
        check.bytes_read += found.bytes
        for name, _key, _got, problem in found.differs:
            damaged(name, problem)
        if found.more:
            check.problems.append(f"and {found.more} more object(s) differ on read-back in {store.where()}")

    items = to_read()
    try:
        (batches or Batches()).run(functools.partial(read_back, store), items, done)
    finally:
        items.close()
        if shared is None:
            listing.spool.close()
    return check


SHOWN = 1000  # differing objects a read-back batch names (the others are counted)


@dataclass
class ReadBack:
    """What re-reading one batch found: bytes downloaded, and per object that differs (at most
    SHOWN; `more` counts the rest) its entry name, stored key, (size, crc32c) read, and the problem."""

    bytes: int = 0
    differs: list[tuple[str, str, tuple[int, str], str]] = field(default_factory=list)
    more: int = 0


def read_back(store: BackupStore, items: list[list[Any]]) -> ReadBack:
    """Download each [stored key, name, size, crc32c] of `items` (on the process's copy workers)
    and recompute its crc32c (a unit of validation's read-back)."""

    def one(item: list[Any]) -> tuple[int, str]:
        data = store.get_bytes(item[0])
        return len(data), crc32c_b64(data)

    found = ReadBack()
    for item, got in zip(items, run_all(one, items), strict=True):
        found.bytes += got[0]
        problem = read_back_problem(store, item, got)
        if problem and len(found.differs) < SHOWN:
            found.differs.append((item[1], item[0], got, problem))
        elif problem:
            found.more += 1
    return found


def read_back_problem(store: BackupStore, item: list[Any], got: tuple[int, str]) -> str | None:
    """The problem when an object read back as `got` (size, crc32c) is not what its entry says."""
    key, name, size, crc32c = item
    if got[0] == size and (not crc32c or got[1] == crc32c):
        return None
    return (
        f"content differs on read-back: {name!r} ({store.where(key)}) "
        f"crc32c {got[1]} / {got[0]} bytes, manifest says {crc32c} / {size}"
    )


BATCH = 5000  # entries looked up at a time


def _until(blob: Any) -> str | None:
    """A listed object's retain-until as the API wrote it (None: not retained)."""
    return (blob._properties.get("retention") or {}).get("retainUntilTime")


def _listing_shard(key: str) -> str:
    """What to list for a stored key: its folder (`_common_prefix`), and in a pool, the shard of
    the key's first character after it."""
    prefix = _common_prefix(key)
    return key[: len(prefix) + 1] if key.startswith("pool/") else prefix


def _common_prefix(key: str) -> str:
    """Listing prefix for a stored key: its folder down to the backup or pool level."""
    parts = key.split("/")
    if parts[0] == "pool":
        return "/".join(parts[:3]) + "/"
    return "/".join(parts[:6]) + "/" if len(parts) > 6 else key.rsplit("/", 1)[0] + "/"
