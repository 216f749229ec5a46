"""The one manifest format. Pure: no Prefect, no I/O.

One manifest per backup run is the single source of truth: what was copied, from which source
state, with which checksums. It is written last (so "the manifest exists" means "the backup is
complete") and deleted first when a backup is pruned. Validation, retention, restore and drills
read manifests; they never infer state from folder names.

Layout in the backup bucket:
    <component>/<source>/<yyyy>/<mm>/<dd>/<backup_id>/manifest.json
    <component>/<source>/<yyyy>/<mm>/<dd>/<backup_id>/_chunks/<sha256>.json   (format 2 only)
A manifest of more than INLINE_ENTRIES entries is written in format 2: its entries in
content-addressed chunk files (written first; cut where the entries' names say, `chunk_rows`, so
backups that differ in a few entries have the same chunks elsewhere), manifest.json the header
whose digest seals the chunk digests. Format 1 keeps the entries in manifest.json; both are read.
In memory a format 2 manifest read from the store is its header: `entries` stays empty and
readers stream the entries chunk by chunk (`BackupStore.iter_entries`), one chunk at a time.
Component data that belongs to one backup lives beside its manifest; data shared between backups
(Cloud Storage objects, keyed by generation) lives in a pool that prune sweeps by reference.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from backstop import __version__
from backstop.core.errors import ValidationFailed
from backstop.core.names import check_backup_id

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1  # one file: header and entries together
CHUNKED_FORMAT = 2  # header in manifest.json; entries in content-addressed chunk files beside it
CHUNK_ENTRIES = 50_000  # at most 2x this many entries a chunk file, half of it on average (`chunk_rows`)
INLINE_ENTRIES = 1_000  # at most this many entries stay in manifest.json (format 1): a manifest
# read for its header (listing, retention, lookups) costs little however large the backup
CHUNKS_DIR = "_chunks/"

# "complete": committed, not validated yet; "validated": the only status a restore, a drill or a
# restore point chooses; "invalid": validation or re-verification found its data damaged;
# "expired": what it holds outside the backup bucket (a Backup for GKE backup, a BigQuery snapshot
# table) is gone, so nothing can be restored from it (tasks/engine/reverify.py marks both).
Status = Literal["complete", "validated", "invalid", "expired"]


class ManifestEntry(BaseModel):
    """One thing the backup holds: an object, a table file, a config file, an exported resource."""

    name: str = Field(description="Name at the source: object name, table id, file path, resource name.")
    stored_key: str = Field(description="Object name in the backup bucket that holds the bytes.")
    size: int = Field(ge=0, description="Size in bytes of the stored copy.")
    crc32c: str | None = Field(
        default=None, description="Base64 big-endian CRC32C, as Cloud Storage reports it."
    )
    md5: str | None = Field(default=None, description="Base64 MD5, where known.")
    sha256: str | None = Field(default=None, description="Hex SHA-256, where Backstop computed it.")
    generation: int | None = Field(default=None, description="Cloud Storage source generation.")
    rows: int | None = Field(default=None, description="Row count, for table data.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="What restore needs to recreate it.")


class ValidationRecord(BaseModel):
    """The outcome of the last validation of this backup."""

    at: datetime
    ok: bool
    checked: int = 0
    read_back: int = 0
    problems: list[str] = Field(default_factory=list)


class SecondaryCopy(BaseModel):
    """State of the copy in the secondary (other region) bucket."""

    bucket: str
    at: datetime
    ok: bool
    objects: int = 0
    problems: list[str] = Field(default_factory=list)
    kms_key_name: str | None = Field(default=None, description="KMS key the secondary copy was written with.")
    kms_key_versions: list[str] | None = Field(
        default=None, description="Key versions the secondary bucket reports for the copied objects."
    )


class ChunkRef(BaseModel):
    """One chunk file of a chunked manifest: where it is (in the backup folder) and its digest."""

    key: str = Field(description="Name inside the backup folder: _chunks/<sha256>.json.")
    sha256: str = Field(description="Hex SHA-256 of the chunk file's bytes.")
    entries: int = Field(ge=0)
    bytes: int = Field(ge=0, description="Sum of the sizes of its entries.")


# Fields added after manifests were first written: left out of the digest while empty, so the
# digest of a manifest written before them still matches.
_LATER_FIELDS = {"secondary": ("kms_key_name", "kms_key_versions")}


class BackupIdentity:
    """Where a backup lives and what its times and status say: shared by the manifest and its
    catalog header (backstop/core/catalog_index.py), which carry the fields used here."""

    backup_id: str
    component: str
    source: str
    started_at: datetime
    finished_at: datetime | None
    status: str

    @property
    def folder(self) -> str:
        """Folder of this backup: <component>/<source>/<yyyy>/<mm>/<dd>/<backup_id>/."""
        day = self.started_at.astimezone(UTC)
        return f"{self.component}/{self.source}/{day:%Y/%m/%d}/{self.backup_id}/"

    @property
    def path(self) -> str:
        return self.folder + MANIFEST_NAME

    @property
    def validated(self) -> bool:
        """The backup may be chosen for a restore: validated, and neither damaged nor expired since."""
        return self.status == "validated"

    @property
    def expired(self) -> bool:
        """Its data outside the backup bucket is gone: never chosen, not even by an unvalidated restore."""
        return self.status == "expired"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class BackupManifest(BackupIdentity, BaseModel):
    """Everything one backup run took, and the state it took it from."""

    format: int = FORMAT_VERSION
    backup_id: str
    component: str
    source: str
    started_at: datetime
    finished_at: datetime | None = None
    status: Status = "complete"
    backstop_version: str = __version__
    source_state: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    kms_key_name: str | None = None
    entries: list[ManifestEntry] = Field(default_factory=list)
    chunks: list[ChunkRef] = Field(
        default_factory=list, description="Format 2: the chunk files that hold the entries, in order."
    )
    validation: ValidationRecord | None = None
    secondary: SecondaryCopy | None = None
    digest: str | None = Field(default=None, description="SHA-256 over the manifest without this field.")

    # -- identity and layout: BackupIdentity -------------------------------------------------

    @property
    def total_bytes(self) -> int:
        if self.chunks and not self.entries:  # a header read without its chunks
            return sum(c.bytes for c in self.chunks)
        return sum(entry.size for entry in self.entries)

    @property
    def entry_count(self) -> int:
        if self.chunks and not self.entries:
            return sum(c.entries for c in self.chunks)
        return len(self.entries)

    # -- serialisation -------------------------------------------------------------------
    def _canonical(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"digest"})
        if not body.get("chunks"):  # format 1 documents never had the field
            body.pop("chunks", None)
        for parent, names in _LATER_FIELDS.items():
            if isinstance(body.get(parent), dict):
                for name in names:
                    if body[parent].get(name) is None:
                        body[parent].pop(name, None)
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def sealed(self) -> BackupManifest:
        """This manifest with its digest computed."""
        return self.model_copy(update={"digest": hashlib.sha256(self._canonical()).hexdigest()})

    def to_bytes(self) -> bytes:
        """Serialise with a digest, so that an edited or truncated manifest is detected on read."""
        return json.dumps(self.sealed().model_dump(mode="json"), indent=1, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "manifest") -> BackupManifest:
        """Parse and verify a manifest; a damaged one raises ValidationFailed naming `where`."""
        try:
            manifest = cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValidationFailed(
                f"{where}: damaged manifest ({first.get('msg')} at {'.'.join(map(str, first.get('loc', ())))})"
            ) from None
        except ValueError as exc:
            raise ValidationFailed(f"{where}: damaged manifest ({exc})") from None
        if manifest.digest != hashlib.sha256(manifest._canonical()).hexdigest():
            raise ValidationFailed(f"{where}: manifest digest does not match its content (edited or damaged)")
        return manifest


class BackupSummary(Protocol):
    """What listing, health, retention and the previous-backup lookup need of a backup: a manifest
    or its catalog header (`ManifestHeader`), never its entries."""

    @property
    def backup_id(self) -> str: ...
    @property
    def component(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def status(self) -> Status: ...
    @property
    def validated(self) -> bool: ...
    @property
    def entry_count(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...
    @property
    def duration_seconds(self) -> float | None: ...
    @property
    def folder(self) -> str: ...
    @property
    def path(self) -> str: ...


B = TypeVar("B", bound=BackupSummary)


def as_header(manifest: BackupManifest, chunks: list[ChunkRef]) -> BackupManifest:
    """The format 2 header of `manifest` whose entries are in `chunks`."""
    return manifest.model_copy(update={"format": CHUNKED_FORMAT, "entries": [], "chunks": chunks})


def chunk_rows(rows: Iterable[tuple[str, int, str]], size: int) -> Iterator[list[tuple[str, int, str]]]:
    """Entry rows (name, size, JSON), in name order, cut into chunks where their names say: after a
    row whose name's CRC-32 is a multiple of size // 2 (so size / 2 rows a chunk on average), or at
    2 x size rows. The cuts depend on the names, not on positions: two backups whose entries differ
    in a few places (objects added, changed, deleted) cut alike everywhere else, and share those
    chunks (the same bytes, so the same digest), which prune then reads once for all of them. Cut
    every `size` rows, one object added near the start would change every chunk after it."""
    every = max(1, size // 2)
    chunk: list[tuple[str, int, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= 2 * size or zlib.crc32(row[0].encode()) % every == 0:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def chunk_file(rows: list[tuple[str, int, str]]) -> tuple[ChunkRef, bytes]:
    """One content-addressed chunk file from entry rows (name, size, the entry's JSON), in order."""
    data = ("[" + ",".join(body for _, _, body in rows) + "]").encode()
    digest = hashlib.sha256(data).hexdigest()
    ref = ChunkRef(
        key=f"{CHUNKS_DIR}{digest}.json", sha256=digest, entries=len(rows), bytes=sum(r[1] for r in rows)
    )
    return ref, data


_ENTRY_LIST = TypeAdapter(list[ManifestEntry])


def entries_of(data: bytes, where: str) -> list[ManifestEntry]:
    """The entries of a JSON list of entries (a chunk file, a checkpoint); ValidationFailed names `where`."""
    try:
        return _ENTRY_LIST.validate_json(data)  # parsed and checked in one pass, in Rust
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(f"{where}: damaged entry list ({str(exc).splitlines()[0]})") from None


def parse_chunk(data: bytes, ref: ChunkRef, where: str) -> list[ManifestEntry]:
    """The entries of one chunk file, after checking it against the digest its header sealed."""
    _check_sealed(data, ref, where)
    try:
        entries = _ENTRY_LIST.validate_json(data)  # parsed and checked in one pass, in Rust
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(f"{where}: damaged manifest chunk ({str(exc).splitlines()[0]})") from None
    return _check_count(entries, ref, where)


class Stored(NamedTuple):
    """What checking a backup's stored objects needs of an entry (prune's scan, validation, the
    secondary copy's check): its name, stored object, size and crc32c."""

    name: str
    stored_key: str
    size: int
    crc32c: str | None


def chunk_stored(data: bytes, ref: ChunkRef, where: str) -> list[Stored]:
    """The `Stored` of each entry of one chunk file, checked against its sealed digest: read several
    times faster than whole entries (plain JSON, no model: the digest already vouches for it)."""
    _check_sealed(data, ref, where)
    try:
        stored = [
            Stored(str(row["name"]), str(row["stored_key"]), int(row["size"]), row.get("crc32c"))
            for row in json.loads(data)
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValidationFailed(f"{where}: damaged manifest chunk ({exc!r})") from None
    return _check_count(stored, ref, where)


def _check_sealed(data: bytes, ref: ChunkRef, where: str) -> None:
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise ValidationFailed(f"{where}: manifest chunk does not match its digest (edited or damaged)")


C = TypeVar("C")


def _check_count(items: list[C], ref: ChunkRef, where: str) -> list[C]:
    if len(items) != ref.entries:
        raise ValidationFailed(
            f"{where}: manifest chunk holds {len(items)} entries, header says {ref.entries}"
        )
    return items


def new_backup_id(now: datetime | None = None) -> str:
    """A sortable, unique backup id: UTC start time plus 6 random hex digits."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return check_backup_id(f"{moment:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}")


def backup_time(backup_id: str) -> datetime:
    """The start time encoded in a backup id."""
    check_backup_id(backup_id)
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def select(
    manifests: list[B],
    component: str | None = None,
    source: str | None = None,
    before: datetime | None = None,
    validated_only: bool = False,
) -> list[B]:
    """Filter manifests and return them newest first. A chooser passes `validated_only` (or drops
    `expired` ones itself): an invalid or expired backup is never validated."""
    chosen = [
        m
        for m in manifests
        if (component is None or m.component == component)
        and (source is None or m.source == source)
        and (before is None or m.started_at <= before)
        and (not validated_only or m.validated)
    ]
    return sorted(chosen, key=lambda m: (m.started_at, m.backup_id), reverse=True)
