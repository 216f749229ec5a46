"""Manifests in the backup bucket: what `BackupStore` (tasks/storage/bucket.py) does with them.

`ManifestStore` writes a manifest (its entries inline, or in content-addressed chunk files under
`<folder>/_chunks/` for large ones), reads it back with its newest update applied, and streams
its entries chunk by chunk (`iter_entries`). The store knows manifests and chunks, not the catalog:
what backups exist is the catalog index's business (tasks/catalog/index.py: `read_headers`,
`find`, `load`, `write_manifest`, which indexes what this module writes).

A manifest is written once (`<folder>/manifest.json`, at commit) and never replaced: later
changes (the validation outcome, the secondary copy record) are written as new objects under
`<folder>/_manifest/<time>-<random>.json`, and reading a manifest applies the newest of them to
its status, validation and secondary fields. So a bucket retention policy or a hold on the
manifest (both forbid replacing an object) never stops validation or the secondary copy.
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any, TypeVar

from backstop.core.errors import NotFound, ValidationFailed
from backstop.core.manifest import (
    CHUNK_ENTRIES,
    INLINE_ENTRIES,
    BackupManifest,
    ChunkRef,
    ManifestEntry,
    Stored,
    as_header,
    chunk_file,
    chunk_rows,
    chunk_stored,
    parse_chunk,
)
from backstop.core.retention_lock import RetentionLock
from tasks.storage.objects import ObjectStore
from tasks.storage.spool import Row

T = TypeVar("T")

UPDATES_DIR = "_manifest/"  # inside a backup folder: later versions of its manifest's mutable fields
ASK: Any = object()  # `write_manifest(found=...)` not given: look the manifest up


class ManifestStore(ObjectStore):
    """The manifests of one backup bucket, over its objects."""

    def __init__(
        self,
        client: Any,
        bucket_name: str,
        kms_key_name: str | None = None,
        hold_validated: bool = False,
        lock: RetentionLock | None = None,
    ) -> None:
        super().__init__(client, bucket_name, kms_key_name, lock)
        self.hold_validated = hold_validated
        # A manifest with more entries than this (or INLINE_ENTRIES) is written in chunks of about
        # half this many (chunk_rows).
        self.chunk_entries = int(os.environ.get("BACKSTOP_CHUNK_ENTRIES", CHUNK_ENTRIES))

    def write_manifest(
        self, manifest: BackupManifest, rows: Iterable[Row] | None = None, found: Any = ASK
    ) -> BackupManifest:
        """Write a manifest (the catalog's `index.write_manifest` calls this and then indexes it).
        Call it last: its presence means the backup is complete.

        The first write creates `manifest.json`. Its entries are `manifest.entries`, or `rows`
        ((name, size, JSON) in name order, streamed, e.g. from an `EntrySpool`); past
        `chunk_entries` entries they go first into content-addressed chunk files under
        `<folder>/_chunks/`, one chunk in memory at a time, and `manifest.json` is the header that
        seals their digests (format 2). A later write (validation, secondary copy) records the
        changed status / validation / secondary fields as a new object under `<folder>/_manifest/`
        and never replaces `manifest.json` (see the module docstring).
        With `hold_validated`, a validated manifest (and that record) gets a temporary hold; when
        that is refused (a validator without storage.objects.update) it is logged, not raised.
        `found`: `manifest.json` as the caller just looked it up (`stat`), else it is looked up here.
        Returns the manifest as written (a format 2 manifest as its header).
        """
        if found is ASK:
            found = self.stat(manifest.path)
        first = found is None
        if first:
            if rows is None and manifest.chunks and not manifest.entries:  # a header: chunks copied
                chunk_keys = [manifest.folder + c.key for c in manifest.chunks]
            else:
                if rows is None:
                    rows = ((e.name, e.size, e.model_dump_json()) for e in manifest.entries)
                manifest, chunk_keys = self._write_entries(manifest, rows)
            written = [manifest.path, *chunk_keys]
            manifest = manifest.sealed()  # the index records its digest
            self.put_bytes(manifest.path, manifest.to_bytes(), content_type="application/json")
        else:
            stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.urandom(3).hex()}"
            key = f"{manifest.folder}{UPDATES_DIR}{stamp}.json"
            record = manifest.model_copy(update={"entries": [], "chunks": []})  # only status fields count
            # retained as long as the manifest it updates (tasks/catalog/locks.py), in the same insert
            retention = getattr(found, "retention", None)
            until = retention.retain_until_time if retention is not None else None
            locked = self.lock is not None and until is not None and until > datetime.now(UTC)
            self.put_bytes(
                key,
                record.to_bytes(),
                content_type="application/json",
                retain_until=until if locked else None,
            )
            written = [manifest.path, key]
        if self.hold_validated and manifest.validated:
            problems = self.set_hold(written, True)
            if problems:  # e.g. the validator's role may not change holds: the next prune places it
                logging.getLogger(__name__).warning(
                    "backup %s validated but not held (the next prune holds it): %s",
                    manifest.backup_id,
                    problems[0],
                )
        return manifest

    def _write_entries(
        self, manifest: BackupManifest, rows: Iterable[Row]
    ) -> tuple[BackupManifest, builtins.list[str]]:
        """`manifest` with its entries from `rows`: inline when few, else in chunk files cut where
        the entries' names say (`chunk_rows`), written here one at a time as they fill (returned as
        its header, with the chunk keys)."""
        rows = iter(rows)
        inline = min(INLINE_ENTRIES, self.chunk_entries)
        head = builtins.list(islice(rows, inline + 1))
        if len(head) <= inline:
            entries = [ManifestEntry.model_validate_json(body) for _, _, body in head]
            return manifest.model_copy(update={"entries": entries, "chunks": []}), []
        refs: builtins.list[ChunkRef] = []
        for part in chunk_rows(chain(head, rows), self.chunk_entries):
            ref, data = chunk_file(part)
            self.put_bytes(manifest.folder + ref.key, data, content_type="application/json")
            refs.append(ref)
        return as_header(manifest, refs), [manifest.folder + r.key for r in refs]

    def manifest_keys(
        self, manifest: BackupManifest, listed: dict[str, Any] | None = None
    ) -> builtins.list[str]:
        """The objects that make up `manifest`: manifest.json, its chunks and its update records."""
        prefix = manifest.folder + UPDATES_DIR
        found = listed if listed is not None else self.list(prefix)
        chunks = [manifest.folder + c.key for c in manifest.chunks]
        return [manifest.path, *chunks] + sorted(k for k in found if k.startswith(prefix))

    def read_manifest(self, key: str, updates: builtins.list[str] | None = None) -> BackupManifest:
        """Read the manifest at `key` with its newest update applied (`updates`: listed update keys).

        A format 2 manifest is returned as its header: its entries are read by `iter_entries`."""
        base = BackupManifest.from_bytes(self.get_bytes(key), where=self.where(key))
        if updates is None:
            updates = sorted(self.list(base.folder + UPDATES_DIR))
        if not updates:
            return base
        newest = max(updates)
        update = BackupManifest.from_bytes(self.get_bytes(newest), where=self.where(newest))
        if (update.backup_id, update.component, update.source) != (
            base.backup_id,
            base.component,
            base.source,
        ):
            raise ValidationFailed(f"{self.where(newest)}: manifest update names another backup")
        return base.model_copy(
            update={"status": update.status, "validation": update.validation, "secondary": update.secondary}
        )

    def iter_entries(self, manifest: BackupManifest) -> Iterator[ManifestEntry]:
        """The entries of `manifest` in order: its own list, or its chunks streamed one at a time
        (each checked against the digest the header sealed; the next one read ahead). A missing or
        damaged chunk raises ValidationFailed naming it."""
        if manifest.entries or not manifest.chunks:
            yield from manifest.entries
            return
        yield from self._iter_chunks(manifest, parse_chunk)

    def iter_stored(self, manifest: BackupManifest, seen: set[str] | None = None) -> Iterator[Stored]:
        """Name, stored key, size and crc32c of each entry of `manifest`, as iter_entries reads them,
        without building the entries (prune's scan of what the kept backups reference, validation's
        and the secondary copy's check of every stored object).

        With `seen` (chunk digests), a chunk whose digest is in it is skipped: its entries are those
        of a chunk read before (another backup's: the header seals each chunk's digest, so the
        same digest means the same entries), and the digest of each chunk read is added to it."""
        read: builtins.list[str] = []
        for digest, stored in self.stored_by_chunk(manifest, seen if seen is not None else ()):
            yield from stored or ()
            read += [digest] if digest else []
        if seen is not None:  # only once every chunk was read: a damaged one leaves them all unseen
            seen.update(read)

    def stored_by_chunk(
        self, manifest: BackupManifest, known: Container[str] = ()
    ) -> Iterator[tuple[str | None, builtins.list[Stored] | None]]:
        """`iter_stored` a chunk at a time: (its digest, its entries), and (digest, None) for a chunk
        whose digest is in `known` (not read). A manifest with its entries inline is one (None,
        entries)."""
        if manifest.entries or not manifest.chunks:
            yield None, [Stored(e.name, e.stored_key, e.size, e.crc32c) for e in manifest.entries]
            return
        unread = manifest.model_copy(update={"chunks": [c for c in manifest.chunks if c.sha256 not in known]})
        yield from ((c.sha256, None) for c in manifest.chunks if c.sha256 in known)
        if unread.chunks:
            yield from self._read_chunks(unread, chunk_stored)

    def _iter_chunks(
        self, manifest: BackupManifest, parse: Callable[[bytes, ChunkRef, str], builtins.list[T]]
    ) -> Iterator[T]:
        for _, items in self._read_chunks(manifest, parse):
            yield from items

    def _read_chunks(
        self, manifest: BackupManifest, parse: Callable[[bytes, ChunkRef, str], builtins.list[T]]
    ) -> Iterator[tuple[str, builtins.list[T]]]:
        """(digest, what `parse` made of it) of each chunk of `manifest`, in order, the next one
        read ahead."""

        def read(ref: ChunkRef) -> builtins.list[T]:
            key = manifest.folder + ref.key
            try:
                data = self.get_bytes(key)
            except NotFound:
                raise ValidationFailed(f"{self.where(key)}: manifest chunk missing") from None
            return parse(data, ref, self.where(key))

        with ThreadPoolExecutor(max_workers=1) as ahead:
            chunks = iter(manifest.chunks)
            first = next(chunks)
            pending = (first.sha256, ahead.submit(read, first))
            for ref in chunks:
                current, pending = pending, (ref.sha256, ahead.submit(read, ref))
                yield current[0], current[1].result()
            yield pending[0], pending[1].result()

    def with_entries(self, manifest: BackupManifest) -> BackupManifest:
        """`manifest` with every entry in memory (for components whose backups are small)."""
        if manifest.entries or not manifest.chunks:
            return manifest
        return manifest.model_copy(update={"entries": builtins.list(self.iter_entries(manifest))})
