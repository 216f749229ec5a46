"""The catalog index: one small header per backup, and an id -> location lookup. Pure: no I/O.

Finding a backup by id, listing the backups of a component or source, health, `backstop list`
and the previous-backup lookup read this index instead of listing the bucket (whose pool holds
every object ever backed up) or parsing every manifest in full. Layout in the backup bucket:

    catalog/<component>/<source>/<backup_id>.json              header, written once at commit
    catalog/<component>/<source>/<backup_id>.status/<time>.json later status (validation), newest wins
    catalog/_ids/<backup_id>.json                              where the manifest of that id lives
    catalog/<component>/<source>/_indexed.json                 "every backup of this source has a header"

Like the manifest, nothing here is ever replaced (bucket retention policies and holds forbid it):
a status change is a new object. The index is a cache of the manifests, never their authority:
a header names its manifest's digest, readers check the manifest they load against it, and a
missing or damaged entry is reported and the manifest read instead. `backstop catalog rebuild`
writes the index again from the manifests.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, ValidationError

from backstop.core.errors import ValidationFailed
from backstop.core.manifest import MANIFEST_NAME, BackupIdentity, BackupManifest, Status, backup_time

CATALOG_PREFIX = "catalog/"
IDS_PREFIX = CATALOG_PREFIX + "_ids/"
STATUS_SUFFIX = ".status/"
INDEXED_NAME = "_indexed.json"
HEADER_FORMAT = 1


class ManifestHeader(BackupIdentity, BaseModel):
    """A backup without its entries: what listing, health and retention need."""

    format: int = HEADER_FORMAT
    backup_id: str
    component: str
    source: str
    started_at: datetime
    finished_at: datetime | None = None
    status: Status = "complete"
    entry_count: int = Field(ge=0, description="Number of entries in the manifest.")
    total_bytes: int = Field(ge=0, description="Bytes stored for the entries.")
    manifest_digest: str | None = Field(default=None, description="Digest of the manifest it summarises.")
    validated_at: datetime | None = None
    secondary_at: datetime | None = Field(default=None, description="When the secondary copy was last made.")
    secondary_ok: bool | None = Field(default=None, description="Whether that secondary copy verified.")
    parts: list[str] | None = Field(
        default=None, description="Parts the backup holds (Composer); None: every part of its component."
    )
    scope: list[str] | None = Field(
        default=None,
        description="What a backup of part of its source was narrowed to (Cloud Storage prefixes, "
        "BigQuery tables); None: the whole source. Never a restore point of the whole source.",
    )
    method: str | None = Field(
        default=None,
        description="How the backup was taken, where a component has several ways (BigQuery: read, "
        "extract, snapshot, whose stored sizes are not comparable); None: its one way.",
    )


# What a later status record of a header changes (validation, re-verification, secondary copy).
STATUS_FIELDS = ("status", "validated_at", "secondary_at", "secondary_ok")


class IdEntry(BaseModel):
    """Where the manifest of one backup id lives."""

    backup_id: str
    component: str
    source: str
    manifest: str


def header_of(manifest: BackupManifest, digest: str | None = None) -> ManifestHeader:
    """The catalog header of `manifest` (`digest`: the sealed manifest's digest, when known)."""
    return ManifestHeader(
        backup_id=manifest.backup_id,
        component=manifest.component,
        source=manifest.source,
        started_at=manifest.started_at,
        finished_at=manifest.finished_at,
        status=manifest.status,
        entry_count=manifest.entry_count,
        total_bytes=manifest.total_bytes,
        manifest_digest=digest or manifest.digest,
        validated_at=manifest.validation.at if manifest.validation else None,
        secondary_at=manifest.secondary.at if manifest.secondary else None,
        secondary_ok=manifest.secondary.ok if manifest.secondary else None,
        parts=parts_of(manifest),
        scope=scope_of(manifest),
        method=manifest.source_state.get("method"),
    )


def parts_of(manifest: BackupManifest) -> list[str] | None:
    """The parts a backup holds, as its source state records them (None: not recorded = all)."""
    parts = manifest.source_state.get("parts")
    return [str(p) for p in parts] if isinstance(parts, list) else None


# The options that narrowed a backup written before its source state recorded `scope` (December
# 2026): Cloud Storage's --prefix and BigQuery's --table (`backstop catalog rebuild` re-reads them).
SCOPE_OPTIONS = ("prefixes", "tables")


def scope_of(manifest: BackupManifest) -> list[str] | None:
    """What a backup of part of its source holds (its source state's `scope`, else the options that
    narrowed an older one); None: the whole source."""
    scope = manifest.source_state.get("scope")
    if scope is None:
        scope = next((manifest.options[k] for k in SCOPE_OPTIONS if manifest.options.get(k)), None)
    if not isinstance(scope, list) or not scope or "" in scope:  # an empty prefix: the whole source
        return None
    return sorted({str(s) for s in scope})


def source_prefix(component: str | None = None, source: str | None = None) -> str:
    if component is None:
        return CATALOG_PREFIX
    return f"{CATALOG_PREFIX}{component}/" + ("" if source is None else f"{source}/")


def header_key(component: str, source: str, backup_id: str) -> str:
    return f"{source_prefix(component, source)}{backup_id}.json"


def status_prefix(component: str, source: str, backup_id: str) -> str:
    return f"{source_prefix(component, source)}{backup_id}{STATUS_SUFFIX}"


def id_key(backup_id: str) -> str:
    return f"{IDS_PREFIX}{backup_id}.json"


def indexed_key(component: str, source: str) -> str:
    return source_prefix(component, source) + INDEXED_NAME


def manifest_path(component: str, source: str, backup_id: str) -> str:
    """Where the manifest of this backup must be (the id encodes its day)."""
    day = backup_time(backup_id)
    return f"{component}/{source}/{day:%Y/%m/%d}/{backup_id}/{MANIFEST_NAME}"


def parse_header(data: bytes, where: str) -> ManifestHeader:
    try:
        return ManifestHeader.model_validate_json(data)
    except (ValidationError, ValueError) as exc:
        raise ValidationFailed(f"{where}: damaged catalog entry ({str(exc).splitlines()[0]})") from None


def parse_id_entry(data: bytes, where: str) -> IdEntry:
    try:
        return IdEntry.model_validate_json(data)
    except (ValidationError, ValueError) as exc:
        raise ValidationFailed(f"{where}: damaged catalog id entry ({str(exc).splitlines()[0]})") from None


def group_listing(keys: list[str]) -> tuple[list[str], dict[str, list[str]], set[str]]:
    """Split a listing of `catalog/...`: header keys, status records by header key, indexed markers."""
    headers: list[str] = []
    statuses: dict[str, list[str]] = {}
    indexed: set[str] = set()
    for key in keys:
        if key.startswith(IDS_PREFIX):
            continue
        head, marker, _ = key.rpartition(STATUS_SUFFIX)
        if marker:
            statuses.setdefault(head + ".json", []).append(key)
        elif key.endswith("/" + INDEXED_NAME):
            indexed.add(key)
        elif key.endswith(".json"):
            headers.append(key)
    return headers, statuses, indexed
