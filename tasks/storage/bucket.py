"""The backup bucket: manifests (the catalog), component data, in-progress markers, holds.

Everything that reads or writes the backup bucket goes through `BackupStore`, which converts
`google.api_core` errors into Backstop errors at the call site (tasks/storage/google_api.py). The
store knows objects, manifests and chunks, not the catalog: what backups exist is the catalog
index's business (tasks/catalog/index.py: `read_headers`, `find`, `load`, `write_manifest`, which
indexes what this module writes). Large manifests stream their entries chunk by chunk (`iter_entries`).

A manifest is written once (`<folder>/manifest.json`, at commit) and never replaced: later
changes (the validation outcome, the secondary copy record) are written as new objects under
`<folder>/_manifest/<time>-<random>.json`, and reading a manifest applies the newest of them to
its status, validation and secondary fields. So a bucket retention policy or a hold on the
manifest (both forbid replacing an object) never stops validation or the secondary copy.
Deletes report objects kept by the bucket (a hold or the retention policy) apart from failures.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.errors import BackstopError, ConfigError, NotFound, ValidationFailed
from backstop.core.manifest import (
    CHUNK_ENTRIES,
    INLINE_ENTRIES,
    MANIFEST_NAME,
    BackupManifest,
    ChunkRef,
    ManifestEntry,
    as_header,
    backup_time,
    chunk_file,
    parse_chunk,
)
from backstop.core.retention_lock import RetentionLock
from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors
from tasks.storage.parallel import parallel_map
from tasks.storage.spool import Row

INPROGRESS_PREFIX = "_inprogress/"
UPDATES_DIR = "_manifest/"  # inside a backup folder: later versions of its manifest's mutable fields


def kept_reason(exc: gexc.GoogleAPICallError) -> str | None:
    """'temporary hold' / 'event-based hold' / 'retention policy ...' when Cloud Storage refused a
    delete or replace because the bucket protects the object.

    The message says which protection (the API's wording); an unknown wording with the error
    reason `retentionPolicyNotMet` still counts as kept. A plain permission error is no protection.
    """
    text = str(getattr(exc, "message", exc))
    reasons = {str(e.get("reason")) for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    if "Temporary hold" in text:
        return "temporary hold"
    if "Event-Based hold" in text:
        return "event-based hold"
    if "retention policy" in text or "object retention" in text:
        until = text.rsplit(" until ", 1)[-1] if " until " in text else ""
        return "bucket retention policy" + (f" until {until}" if until else "")
    if "retentionPolicyNotMet" in reasons:
        return "object hold or retention policy"
    return None


@dataclass
class DeleteOutcome:
    """What a batch delete did: deleted keys, keys the bucket kept (with why), failures (with why)."""

    deleted: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class BackupStore:
    """One backup bucket (primary or secondary)."""

    def __init__(
        self,
        client: Any,
        bucket_name: str,
        kms_key_name: str | None = None,
        hold_validated: bool = False,
        lock: RetentionLock | None = None,
    ) -> None:
        self.client = client
        self.bucket_name = bucket_name
        self.kms_key_name = kms_key_name
        self.hold_validated = hold_validated
        # Object retention on what backups reference (tasks/storage/object_lock.py); None: off.
        self.lock = lock
        self.retention_enabled: bool | None = None  # whether the bucket has it, once asked
        # A manifest with more entries than this is written in chunks of this many.
        self.chunk_entries = int(os.environ.get("BACKSTOP_CHUNK_ENTRIES", CHUNK_ENTRIES))
        self.bucket = client.bucket(bucket_name)

    def __repr__(self) -> str:
        return f"BackupStore(gs://{self.bucket_name})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled (for a unit on a Dask worker) as what it points at: a client holds sockets and
        credentials that do not travel, so the other side opens its own (`reopen_store`), the
        job's kind of client (a store on an impersonating or custom-endpoint client does not travel)."""
        from blocks.clients import credentials_block_in_use

        where = (self.client.project, self.bucket_name, self.kms_key_name, self.hold_validated)
        return reopen_store, (*where, self.chunk_entries, credentials_block_in_use(), self.lock)

    # -- plumbing ------------------------------------------------------------------------
    def where(self, key: str = "") -> str:
        return f"gs://{self.bucket_name}/{key}"

    def ensure_bucket(self, location: str | None = None) -> None:
        """Create the backup bucket if it does not exist: uniform access, public access prevented,
        the store's KMS key as its default, object retention enabled when the store locks objects
        (it can only be enabled at creation); `backstop harden` adds the retention policy."""
        with converted_errors(f"backup bucket {self.where()}"):
            if self.client.lookup_bucket(self.bucket_name, timeout=TIMEOUT) is None:
                bucket = self.client.bucket(self.bucket_name)
                bucket.iam_configuration.uniform_bucket_level_access_enabled = True
                bucket.iam_configuration.public_access_prevention = "enforced"
                if self.kms_key_name:
                    bucket.default_kms_key_name = self.kms_key_name
                self.client.create_bucket(
                    bucket, location=location, timeout=TIMEOUT, enable_object_retention=self.lock is not None
                )

    def check_bucket(self) -> None:
        """Raise NotFound unless the backup bucket exists."""
        with converted_errors(f"backup bucket {self.where()}"):
            if self.client.lookup_bucket(self.bucket_name, timeout=TIMEOUT, retry=RETRY) is None:
                raise NotFound(f"backup bucket {self.where()} does not exist")

    def blob(self, key: str) -> Any:
        return self.bucket.blob(key, kms_key_name=self.kms_key_name)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
    ) -> Any:
        """Upload `data` and verify the stored crc32c; returns the blob. `retain_until`: created
        with that object retention (in the store's lock mode)."""
        blob = self.blob(key)
        if retain_until is not None and self.lock is not None:
            blob.retention.mode = self.lock.mode
            blob.retention.retain_until_time = retain_until
        with converted_errors(f"writing {self.where(key)}"):
            blob.upload_from_string(
                data, content_type=content_type, timeout=TIMEOUT, retry=RETRY, checksum="crc32c"
            )
        return blob

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> Any:
        blob = self.blob(key)
        with converted_errors(f"writing {self.where(key)}"):
            blob.upload_from_filename(
                path, content_type=content_type, timeout=TIMEOUT * 10, checksum="crc32c"
            )
        return blob

    def get_bytes(self, key: str) -> bytes:
        with converted_errors(f"reading {self.where(key)}"):
            return self.bucket.blob(key).download_as_bytes(timeout=TIMEOUT, retry=RETRY, checksum=None)

    def get_file(self, key: str, path: str) -> None:
        with converted_errors(f"reading {self.where(key)}"):
            self.bucket.blob(key).download_to_filename(path, timeout=TIMEOUT * 10, checksum=None)

    def stat(self, key: str) -> Any | None:
        """The blob with its size / crc32c / md5, or None if absent."""
        with converted_errors(f"reading {self.where(key)}"):
            return self.bucket.get_blob(key, timeout=TIMEOUT, retry=RETRY)

    def list(self, prefix: str) -> dict[str, Any]:
        """Every object under `prefix`, by name (one paged listing)."""
        with converted_errors(f"listing {self.where(prefix)}"):
            return {
                b.name: b
                for b in self.client.list_blobs(self.bucket, prefix=prefix, timeout=TIMEOUT, retry=RETRY)
            }

    def iter_list(self, prefix: str) -> Iterator[Any]:
        """Every object under `prefix`, page by page, in name order (never held whole)."""
        with converted_errors(f"listing {self.where(prefix)}"):
            yield from self.client.list_blobs(self.bucket, prefix=prefix, timeout=TIMEOUT, retry=RETRY)

    def list_prefixes(self, prefix: str) -> builtins.list[str]:
        """The sub-folders directly under `prefix` (a delimiter listing: no object is returned)."""
        with converted_errors(f"listing {self.where(prefix)}"):
            pages = self.client.list_blobs(
                self.bucket, prefix=prefix, delimiter="/", timeout=TIMEOUT, retry=RETRY
            )
            for _ in pages:  # the prefixes are known once the pages are read
                pass
            return sorted(pages.prefixes)

    def delete_objects(self, keys: builtins.list[str], workers: int = 16) -> DeleteOutcome:
        """Delete `keys`. Absent keys count as deleted; held or retained ones as kept by the bucket."""

        def one(key: str) -> tuple[str, str, str]:
            try:
                with converted_errors(f"deleting {self.where(key)}"):
                    try:
                        self.bucket.blob(key).delete(timeout=TIMEOUT, retry=RETRY)
                    except gexc.Forbidden as exc:
                        reason = kept_reason(exc)
                        if reason is None:
                            raise
                        return key, "kept", reason
            except NotFound:
                return key, "deleted", ""
            except BackstopError as exc:
                return key, "failed", str(exc)
            return key, "deleted", ""

        outcome = DeleteOutcome()
        for key, what, why in parallel_map(one, keys, workers):
            if what == "deleted":
                outcome.deleted.append(key)
            elif what == "kept":
                outcome.kept[key] = why
            else:
                outcome.failed[key] = why
        return outcome

    def delete(self, keys: builtins.list[str], workers: int = 16) -> builtins.list[str]:
        """Delete `keys`; return the ones that could not be deleted (with the reason)."""
        outcome = self.delete_objects(keys, workers)
        return [*outcome.failed.values()] + [
            f"{self.where(key)}: kept by the bucket ({why})" for key, why in outcome.kept.items()
        ]

    def set_hold(self, keys: builtins.list[str], held: bool) -> builtins.list[str]:
        """Place (or release) a temporary hold on `keys`; returns problems, one per key that failed."""

        def one(key: str) -> str | None:
            blob = self.bucket.blob(key)
            blob.temporary_hold = held
            try:
                with converted_errors(f"{'holding' if held else 'releasing'} {self.where(key)}"):
                    blob.patch(timeout=TIMEOUT, retry=RETRY)
            except BackstopError as exc:
                return str(exc)
            return None

        return [p for p in parallel_map(one, keys) if p]

    # -- the catalog ---------------------------------------------------------------------
    def write_manifest(self, manifest: BackupManifest, rows: Iterable[Row] | None = None) -> BackupManifest:
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
        Returns the manifest as written (a format 2 manifest as its header).
        """
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
        """`manifest` with its entries from `rows`: inline when few, else in chunk files written
        here as they fill (returned as its header, with the chunk keys)."""
        buffer: builtins.list[Row] = []
        refs: builtins.list[ChunkRef] = []

        def flush(part: builtins.list[Row]) -> None:
            ref, data = chunk_file(part)
            self.put_bytes(manifest.folder + ref.key, data, content_type="application/json")
            refs.append(ref)

        for row in rows:
            buffer.append(row)
            if len(buffer) > self.chunk_entries:
                flush(buffer[: self.chunk_entries])
                buffer = buffer[self.chunk_entries :]
        if not refs and len(buffer) <= min(INLINE_ENTRIES, self.chunk_entries):
            entries = [ManifestEntry.model_validate_json(body) for _, _, body in buffer]
            return manifest.model_copy(update={"entries": entries, "chunks": []}), []
        for start in range(0, len(buffer), self.chunk_entries):
            flush(buffer[start : start + self.chunk_entries])
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

        def read(ref: ChunkRef) -> builtins.list[ManifestEntry]:
            key = manifest.folder + ref.key
            try:
                data = self.get_bytes(key)
            except NotFound:
                raise ValidationFailed(f"{self.where(key)}: manifest chunk missing") from None
            return parse_chunk(data, ref, self.where(key))

        with ThreadPoolExecutor(max_workers=1) as ahead:
            chunks = iter(manifest.chunks)
            pending = ahead.submit(read, next(chunks))
            for ref in chunks:
                current, pending = pending, ahead.submit(read, ref)
                yield from current.result()
            yield from pending.result()

    def with_entries(self, manifest: BackupManifest) -> BackupManifest:
        """`manifest` with every entry in memory (for components whose backups are small)."""
        if manifest.entries or not manifest.chunks:
            return manifest
        return manifest.model_copy(update={"entries": builtins.list(self.iter_entries(manifest))})

    # -- in-progress markers (prune does not sweep data a running backup may reuse) ------
    def mark_in_progress(self, manifest: BackupManifest) -> str:
        key = f"{INPROGRESS_PREFIX}{manifest.component}/{manifest.source}/{manifest.backup_id}.json"
        body = {"backup_id": manifest.backup_id, "started_at": manifest.started_at.isoformat()}
        self.put_bytes(key, json.dumps(body).encode(), content_type="application/json")
        return key

    def clear_in_progress(self, manifest: BackupManifest) -> None:
        self.delete([f"{INPROGRESS_PREFIX}{manifest.component}/{manifest.source}/{manifest.backup_id}.json"])

    def in_progress(
        self, component: str, source: str, younger_than_hours: float = 24.0
    ) -> builtins.list[str]:
        """Backup ids of runs of this source that started recently and have not committed.

        A marker whose backup has a manifest is not a running backup: its delete was refused
        (a bucket retention policy keeps the marker as long as any other object).
        """
        now = datetime.now(UTC)
        running = []
        for key, blob in self.list(f"{INPROGRESS_PREFIX}{component}/{source}/").items():
            created = blob.time_created or now
            if (now - created).total_seconds() < younger_than_hours * 3600:
                backup_id = key.rsplit("/", 1)[-1].removesuffix(".json")
                if not self._committed(component, source, backup_id):
                    running.append(backup_id)
        return running

    def _committed(self, component: str, source: str, backup_id: str) -> bool:
        try:
            day = backup_time(backup_id)
        except BackstopError:
            return False
        return self.stat(f"{component}/{source}/{day:%Y/%m/%d}/{backup_id}/{MANIFEST_NAME}") is not None


def reopen_store(
    project: str,
    bucket_name: str,
    kms_key_name: str | None,
    hold_validated: bool,
    chunk_entries: int,
    credentials_block: str | None,
    lock: RetentionLock | None = None,
) -> BackupStore:
    """A pickled BackupStore on the other side: a new client for the same project, bucket and key,
    built as the pickling process builds its clients (emulator variables, the same credentials block,
    else Application Default Credentials)."""
    from blocks.clients import adopt_credentials_block, storage_client

    adopt_credentials_block(credentials_block)
    store = BackupStore(storage_client(project), bucket_name, kms_key_name, hold_validated, lock)
    store.chunk_entries = chunk_entries
    return store


def open_store(settings: BackstopSettings, secondary: bool = False, client: Any | None = None) -> BackupStore:
    """The primary (or secondary) backup store named by `settings`, in the backup project, with the
    settings' object retention; the secondary's client is built with `secondary_credentials_block`
    when the settings name one (the identity that alone writes the secondary copy)."""
    bucket = settings.secondary_bucket if secondary else settings.backup_bucket
    if not bucket:
        raise ConfigError("settings name no secondary_bucket")
    # A key lives in one location: the secondary bucket (another region) needs its own.
    key = (settings.secondary_kms_key_name or settings.kms_key_name) if secondary else settings.kms_key_name
    if client is None:
        credentials = None
        if secondary and settings.secondary_credentials_block:
            from blocks.credentials import load_credentials

            credentials = load_credentials(settings.secondary_credentials_block)
        client = storage_client(settings.buckets_project, credentials)
    return BackupStore(
        client,
        bucket,
        key,
        hold_validated=settings.hold_newest_validated,
        lock=RetentionLock.from_settings(settings),
    )
