"""Reading and writing the catalog index (`backstop/core/catalog_index.py`) in a backup bucket.

The index is written at commit, after the manifest, and a status record is added on validation;
nothing is replaced. Readers check what they load against it and fall back to the manifests,
reporting why, when an entry is missing or damaged: the index makes lookups cheap, the manifests
stay the truth.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from backstop.core.catalog_index import (
    CATALOG_PREFIX,
    STATUS_FIELDS,
    IdEntry,
    ManifestHeader,
    group_listing,
    header_key,
    header_of,
    id_key,
    indexed_key,
    manifest_path,
    parse_header,
    parse_id_entry,
    source_prefix,
    status_prefix,
)
from backstop.core.errors import BackstopError, NotFound, ValidationFailed
from backstop.core.manifest import MANIFEST_NAME, BackupManifest, BackupSummary
from tasks.storage.bucket import BackupStore
from tasks.storage.manifests import UPDATES_DIR
from tasks.storage.parallel import at_once, parallel_map
from tasks.storage.spool import Row

log = logging.getLogger(__name__)
# Top-level folders of a backup bucket that are not component catalogs.
NOT_COMPONENTS = {"pool", "catalog", "_inprogress", "_resume", "runs", "drills", "verifications"}


def _json(model: Any) -> bytes:
    return model.model_dump_json(indent=1).encode()


def write_entry(store: BackupStore, manifest: BackupManifest, first: bool) -> list[str]:
    """Index `manifest` (just written): header and id entry on the first write, else a status record.

    Returns the keys written.
    """
    c, s, b = manifest.component, manifest.source, manifest.backup_id
    if not first:
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.urandom(3).hex()}"
        key = f"{status_prefix(c, s, b)}{stamp}.json"
        store.put_bytes(key, _json(header_of(manifest)), content_type="application/json")
        return [key]
    entry = IdEntry(backup_id=b, component=c, source=s, manifest=manifest.path)
    written = {header_key(c, s, b): _json(header_of(manifest)), id_key(b): _json(entry)}
    parallel_map(lambda key: store.put_bytes(key, written[key], content_type="application/json"), [*written])
    return [*written]


def entry_keys(store: BackupStore, backup: BackupSummary) -> list[str]:
    """Every catalog object of one backup: header, status records, id entry."""
    c, s, b = backup.component, backup.source, backup.backup_id
    return [header_key(c, s, b), *sorted(store.list(status_prefix(c, s, b))), id_key(b)]


def mark_indexed_if_alone(store: BackupStore, manifest: BackupManifest) -> None:
    """Mark the source as fully indexed once; only when this is its only manifest (a source with
    manifests from before the index stays unmarked, so readers fall back until `catalog rebuild`)."""
    marker = indexed_key(manifest.component, manifest.source)
    if store.stat(marker) is not None:
        return
    others = [
        k
        for k in store.list(f"{manifest.component}/{manifest.source}/")
        if k.endswith("/" + MANIFEST_NAME) and k != manifest.path
    ]
    if not others:
        store.put_bytes(marker, b'{"indexed": true}', content_type="application/json")


def sources(store: BackupStore, component: str | None = None) -> list[tuple[str, str]]:
    """Every (component, source) folder in the bucket, from delimiter listings (never the pool)."""
    components = (
        [component]
        if component is not None
        else [p.rstrip("/") for p in store.list_prefixes("") if p.rstrip("/") not in NOT_COMPONENTS]
    )
    return sorted(
        (c, p.rstrip("/").rsplit("/", 1)[-1]) for c in components for p in store.list_prefixes(f"{c}/")
    )


def scan_manifests(
    store: BackupStore,
    component: str,
    source: str,
    on_damaged: Callable[[str], None] | None = None,
) -> list[BackupManifest]:
    """Every readable manifest found by listing `<component>/<source>/` (not the index): for
    sources indexed before the catalog existed and for `backstop catalog rebuild`."""
    listed = store.list(f"{component}/{source}/")
    keys = [k for k in listed if k.endswith("/" + MANIFEST_NAME)]
    updates: dict[str, list[str]] = {}
    for k in listed:
        folder, marker, _ = k.rpartition("/" + UPDATES_DIR)
        if marker:
            updates.setdefault(folder + "/" + MANIFEST_NAME, []).append(k)

    def read(key: str) -> BackupManifest | None:
        try:
            return store.read_manifest(key, updates.get(key, []))
        except ValidationFailed as exc:
            if on_damaged is None:
                raise
            on_damaged(str(exc))
            return None

    found = [m for m in parallel_map(read, keys) if m is not None]
    return [m for m in found if m.component == component and m.source == source]


# Headers read inside `headers_read_once()`, by (bucket, component, source).
_read_once: ContextVar[dict[tuple[str, str | None, str | None], list[ManifestHeader]] | None] = ContextVar(
    "headers_read_once", default=None
)


@contextmanager
def headers_read_once() -> Iterator[None]:
    """Inside the block, `read_headers` reads a source's headers in a bucket once: a restore reads
    them to find its restore point, then to open the backup, and both must see the same catalog."""
    token = _read_once.set({})
    try:
        yield
    finally:
        _read_once.reset(token)


def read_headers(
    store: BackupStore,
    component: str | None = None,
    source: str | None = None,
    on_damaged: Callable[[str], None] | None = None,
) -> list[ManifestHeader]:
    """Headers of the backups of `component` / `source` (all when None), from the index.

    A source not (yet) fully indexed is read from its manifests, with a warning to rebuild; a
    damaged header is reported (through `on_damaged`, else raised) and its manifest read instead.
    Inside `headers_read_once()`, as read the first time.
    """
    memo, key = _read_once.get(), (store.where(), component, source)
    if memo is not None and key in memo:
        return list(memo[key])
    headers = _read_headers(store, component, source, on_damaged)
    if memo is not None:
        memo[key] = headers
    return list(headers)


def _read_headers(
    store: BackupStore,
    component: str | None,
    source: str | None,
    on_damaged: Callable[[str], None] | None,
) -> list[ManifestHeader]:
    listed = store.list(source_prefix(component, source))
    keys, statuses, indexed = group_listing(sorted(listed))
    wanted = sources(store, component) if source is None else [(component or "", source)]
    unindexed = [(c, s) for c, s in wanted if c and indexed_key(c, s) not in indexed]

    def report(problem: str) -> None:
        if on_damaged is None:
            raise ValidationFailed(problem)
        on_damaged(problem)

    def one(key: str) -> ManifestHeader | None:
        try:
            header = parse_header(store.get_bytes(key), store.where(key))
            if key != header_key(header.component, header.source, header.backup_id):
                raise ValidationFailed(f"{store.where(key)}: catalog entry names another backup")
        except NotFound:
            return None  # pruned while we listed
        except ValidationFailed as exc:
            return _header_from_manifest(store, key, str(exc), report)
        updates = sorted(statuses.get(key, []))
        if updates:
            try:
                newest = parse_header(store.get_bytes(updates[-1]), store.where(updates[-1]))
                header = header.model_copy(update={k: getattr(newest, k) for k in STATUS_FIELDS})
                if header.parts is None:  # a header written before headers recorded parts
                    header = header.model_copy(update={"parts": newest.parts})
                if header.scope is None:  # ... or scope (`catalog rebuild` writes a record that does)
                    header = header.model_copy(update={"scope": newest.scope})
            except (ValidationFailed, NotFound) as exc:
                return _header_from_manifest(store, key, str(exc), report)
        return header

    skip = {(c, s) for c, s in unindexed}
    chosen = [k for k in keys if tuple(k[len(CATALOG_PREFIX) :].split("/")[:2]) not in skip]
    found = [h for h in parallel_map(one, chosen) if h is not None]
    for c, s in unindexed:  # a new source has no marker until its first commit: nothing to say then
        scanned = scan_manifests(store, c, s, on_damaged)
        if scanned:
            log.warning(
                "catalog index of %s/%s not built: read its %d manifest(s) (run `backstop catalog rebuild`)",
                c, s, len(scanned),
            )  # fmt: skip
        found += [header_of(m) for m in scanned]
    return [
        h
        for h in found
        if (component is None or h.component == component) and (source is None or h.source == source)
    ]


def _header_from_manifest(
    store: BackupStore, key: str, problem: str, report: Callable[[str], None]
) -> ManifestHeader | None:
    """A damaged catalog entry: say so, and summarise the manifest it stands for instead."""
    log.warning("%s: reading the manifest instead", problem)
    c, s, name = key[len(CATALOG_PREFIX) :].split("/", 2)
    try:
        return header_of(store.read_manifest(manifest_path(c, s, name.removesuffix(".json"))))
    except BackstopError as exc:
        report(f"{problem}; its manifest: {exc}")
        return None


def load(store: BackupStore, header: ManifestHeader) -> BackupManifest:
    """The full manifest a header stands for; a header that disagrees with it is reported."""
    manifest = store.read_manifest(header.path)
    if header.manifest_digest and manifest.digest != header.manifest_digest:
        log.warning(
            "catalog entry of backup %s does not match its manifest %s (the manifest is used; "
            "run `backstop catalog rebuild`)", header.backup_id, store.where(header.path),
        )  # fmt: skip
    return manifest


_found: dict[tuple[str, str], BackupManifest] = {}


@contextmanager
def found_already(store: BackupStore, manifest: BackupManifest) -> Iterator[None]:
    """Within it, `find` of `manifest`'s backup in the same bucket answers it without reading the
    bucket again: for a command that has just found it and then runs a flow in its own process (the
    CLI's restore checks the backup's source before the flow starts)."""
    where = (store.where(), manifest.backup_id)
    _found[where] = manifest
    try:
        yield
    finally:
        _found.pop(where, None)


def find(store: BackupStore, backup_id: str) -> BackupManifest:
    """The manifest of `backup_id`: through the id entry, else by looking where it must be."""
    if (store.where(), backup_id) in _found:
        return _found[(store.where(), backup_id)]
    key = id_key(backup_id)
    try:
        entry = parse_id_entry(store.get_bytes(key), store.where(key))
        manifest = store.read_manifest(entry.manifest)
        if manifest.backup_id != backup_id:
            raise ValidationFailed(
                f"{store.where(key)}: catalog id entry points at backup {manifest.backup_id}"
            )
        return manifest
    except NotFound:
        log.warning("backup %s has no catalog id entry: looking for its manifest", backup_id)
    except ValidationFailed as exc:
        log.warning("%s: looking for the manifest instead", exc)
    for c, s in sources(store):
        path = manifest_path(c, s, backup_id)
        if store.stat(path) is not None:
            return store.read_manifest(path)
    raise NotFound(f"backup {backup_id} not found in {store.where()}")


def rebuild(store: BackupStore, on_damaged: Callable[[str], None]) -> dict[str, int]:
    """Write the index again from the manifests; returns counts (indexed, sources, damaged).

    A missing header is written; a present one gets a status record with the manifest's status
    (nothing is replaced, so this works under a retention policy); a damaged one is rewritten
    where the bucket allows it, else reported.
    """
    counts = {"indexed": 0, "sources": 0, "damaged": 0}

    def note(problem: str) -> None:
        counts["damaged"] += 1
        on_damaged(problem)

    for c, s in sources(store):
        listed = store.list(source_prefix(c, s))
        for manifest in scan_manifests(store, c, s, note):
            key = header_key(c, s, manifest.backup_id)
            if key in listed:
                try:
                    parse_header(store.get_bytes(key), store.where(key))
                    write_entry(store, manifest, first=False)
                except ValidationFailed as exc:
                    note(f"{exc} (rewriting it)")
                    try:
                        write_entry(store, manifest, first=True)
                    except BackstopError as exc2:
                        note(f"{store.where(key)}: could not be rewritten ({exc2})")
            else:
                write_entry(store, manifest, first=True)
            counts["indexed"] += 1
        if indexed_key(c, s) not in listed:
            store.put_bytes(indexed_key(c, s), json.dumps({"indexed": True}).encode(), "application/json")
        counts["sources"] += 1
    return counts


def first_loadable(
    store: BackupStore,
    headers: list[ManifestHeader],
    where: Callable[[BackupManifest], bool] | None = None,
    on_damaged: Callable[[str], None] | None = None,
    validated_only: bool = False,
) -> BackupManifest | None:
    """The first of `headers` (newest first, from `select`) whose manifest loads and passes `where`.

    Only that manifest's entries are read: the others stay headers. A damaged manifest is reported
    and skipped; one pruned since the listing is skipped. With `validated_only`, the manifest
    itself must say validated (a catalog entry claiming it is not enough).
    """
    for header in headers:
        try:
            manifest = load(store, header)
        except NotFound:
            continue
        except ValidationFailed as exc:
            if on_damaged is not None:
                on_damaged(str(exc))
            continue
        if manifest.expired:  # its data outside the bucket is gone (a header may not say so yet)
            continue
        if validated_only and not manifest.validated:
            if on_damaged is not None:
                on_damaged(
                    f"catalog entry of backup {header.backup_id} says {header.status}, its manifest "
                    f"{store.where(header.path)} says {manifest.status} (run `backstop catalog rebuild`)"
                )
            continue
        if where is None or where(manifest):
            return manifest
    return None


def write_manifest(
    store: BackupStore, manifest: BackupManifest, rows: Iterable[Row] | None = None
) -> BackupManifest:
    """Write a manifest (`BackupStore.write_manifest`: call it last) and its index entry."""
    found = store.stat(manifest.path)
    manifest = store.write_manifest(manifest, rows, found=found)
    if found is None:  # the first write: header and id entry, and the source marked indexed if new
        at_once(
            lambda: write_entry(store, manifest, first=True), lambda: mark_indexed_if_alone(store, manifest)
        )
    else:
        write_entry(store, manifest, first=False)
    return manifest


def list_manifests(
    store: BackupStore,
    component: str | None = None,
    source: str | None = None,
    on_damaged: Callable[[str], None] | None = None,
) -> list[BackupManifest]:
    """All readable manifests of the backups the catalog index lists (format 2 as headers).

    A damaged manifest is reported through `on_damaged` (or raised when not given) and never
    hides the others; a manifest pruned while we read is left out.
    """

    def read(header: ManifestHeader) -> BackupManifest | None:
        try:
            return load(store, header)
        except NotFound:
            return None
        except ValidationFailed as exc:
            if on_damaged is None:
                raise
            on_damaged(str(exc))
            return None

    headers = read_headers(store, component, source, on_damaged)
    return [m for m in parallel_map(read, headers) if m is not None]
