"""Validate and restore BigQuery backups (the BigQuery component's second half)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from backstop.core.errors import NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry
from blocks.settings import BackstopSettings
from tasks.components.bigquery import data as bqio
from tasks.components.bigquery import history, stored_parquet
from tasks.components.bigquery.backup import clients
from tasks.components.bigquery.create import build_table, create_table, ensure_dataset
from tasks.components.bigquery.digest import DIGEST_SCHEME, digest_scheme, row_hasher
from tasks.components.bigquery.plan import table_rows
from tasks.components.bigquery.rowgroups import check_row_groups, has_group_digests
from tasks.components.bigquery.schema import (
    TableDigest,
    geography_columns,
    sample_mask,
    schema_fingerprint,
    schema_to_json,
)
from tasks.components.bigquery.snapshot import restore_from_snapshot, validate_snapshot
from tasks.engine.protocol import RestorePlan
from tasks.storage import scratch
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors
from tasks.storage.parallel import prefetch


# -- validate ------------------------------------------------------------------------------
def parts_of(manifest: BackupManifest, entry: ManifestEntry) -> list[ManifestEntry]:
    """The Parquet part entries of a table entry, in order (the table entry itself first)."""
    more = [
        e
        for e in manifest.entries
        if e.metadata.get("kind") == "part" and e.metadata.get("table") == entry.name
    ]
    return [entry, *sorted(more, key=lambda e: e.stored_key)]


def data_format_of(entry: ManifestEntry) -> str:
    """The data format of a table entry's files ("parquet" for backups made before the option)."""
    return str(entry.metadata.get("format") or "parquet")


def file_row_count(path: str, fmt: str) -> int:
    """Rows of a local data file: Parquet footer, or the record counts of the Avro blocks."""
    if fmt != "avro":
        return bqio.parquet_rows(path)
    from tasks.components.bigquery.avro import avro_rows

    with open(path, "rb") as handle:
        return avro_rows(handle)


def file_batches(path: str, fmt: str, schema: list[dict[str, Any]]) -> Iterator[pa.RecordBatch]:
    """Record batches of a local data file, in the Arrow types of the source read."""
    if fmt != "avro":
        yield from bqio.parquet_batches(path)
        return
    from tasks.components.bigquery.avro import avro_batches

    with open(path, "rb") as handle:
        yield from avro_batches(handle, schema)


def validate_table(
    settings: BackstopSettings,
    store: BackupStore,
    manifest: BackupManifest,
    entry: ManifestEntry,
    percent: float,
    compare_source: bool = True,
) -> list[str]:
    """Problems of one table's backup: Parquet rows (file footers), source rows at backup time, schema,
    and, with `percent` > 0, the content: every row of the downloaded files hashed and compared with
    the content digest the backup took while reading the source, then (`compare_source`) a sample
    of `percent` of the rows compared with the source read again as of the backup's start.

    `compare_source` False (validation right after the backup, in its run): the source was read
    and hashed moments ago as of the same snapshot, so the files are checked against that digest
    and the source's count at backup time, without a second full read; a backup that recorded
    row-group digests has its files' bytes checked whole by crc32c and a sample of their row groups
    decoded (tasks/components/bigquery/rowgroups.py). A backup without a digest (method extract)
    is always compared with the source."""
    if entry.metadata.get("kind") != "table":
        return []
    client, read_client = clients(settings)
    if entry.metadata.get("snapshot_table"):
        return validate_snapshot(client, entry)
    project, dataset, name = settings.project, manifest.source, entry.name
    has_digest = bool(entry.metadata.get("content_digest"))
    parts = parts_of(manifest, entry)
    by_groups = percent > 0 and not compare_source and has_group_digests(entry, parts)
    with scratch.directory("backstop-bq-") as directory:
        # the content check reads every row, so each file is fetched once, whole; the row-group
        # check reads the sampled groups only, by range
        whole = directory if percent > 0 and not by_groups else None
        footers: dict[str, bytes] = {}  # read once: counted here, then reused for the sample
        problems, paths = _fetch_and_count(store, manifest, entry, whole, footers)
        sampled: list[np.ndarray] = []
        if by_groups and not problems:

            def fetch(index: int, part: ManifestEntry, groups: list[int]) -> tuple[str | None, str]:
                path = os.path.join(directory, f"sample-{index:05d}.parquet")
                key = part.stored_key
                return stored_parquet.fetch_row_groups(store, key, groups, path, footers.get(key)), path

            problems, _ = check_row_groups(entry, parts, fetch, percent)
        elif percent > 0 and not problems:
            keep = percent if compare_source or not has_digest else None
            problems, sampled = _check_content(entry, paths, keep)
    try:
        with converted_errors(f"BigQuery table {project}.{dataset}.{name}"):
            table = client.get_table(f"{project}.{dataset}.{name}", timeout=TIMEOUT, retry=RETRY)
    except NotFound:
        return [*problems, f"table {name!r}: no longer exists in {project}.{dataset}; source checks skipped"]
    if schema_fingerprint(schema_to_json(table.schema)) != entry.metadata.get("fingerprint"):
        problems.append(f"table {name!r}: schema fingerprint differs from the source's current schema")
    # Right after the backup, the backup itself compared its count as of the snapshot time with the
    # rows it read (backup_table, moments ago; rows_at_snapshot): asked again only later.
    at_backup = (
        history.count_as_of(client, project, dataset, name, manifest.started_at, live_on_emulator=True)
        if compare_source or entry.metadata.get("rows_at_snapshot") is None
        else None
    )
    if at_backup is not None and at_backup != table_rows(entry):
        problems.append(
            f"table {name!r}: source held {at_backup} rows at backup time, manifest says {table_rows(entry)}"
        )
    if percent > 0 and not problems and (compare_source or not has_digest):
        problems = _compare_sample(read_client, project, dataset, entry, sampled, percent, manifest)
    return problems


def _fetch_and_count(
    store: BackupStore,
    manifest: BackupManifest,
    entry: ManifestEntry,
    directory: str | None,
    footers: dict[str, bytes] | None = None,
) -> tuple[list[str], list[str]]:
    """(problems, local paths): each data file of a table checked for its row count against the
    manifest, from the footer alone (kept in `footers` by stored key, when given), or downloaded
    into `directory` when given (Avro always is)."""
    problems: list[str] = []
    paths: list[str] = []
    parts, fmt, name = parts_of(manifest, entry), data_format_of(entry), entry.name
    # Avro has no footer to read remotely: its blocks are counted in a local copy
    local = scratch.directory("backstop-bq-") if not directory and fmt == "avro" else None
    into = directory or (local.name if local else None)
    try:
        for part in parts:
            try:
                if into:
                    path = os.path.join(into, os.path.basename(part.stored_key))
                    store.get_file(part.stored_key, path)
                    paths.append(path)
                    file_rows = file_row_count(path, fmt)
                else:  # two small ranged reads, no data pages
                    footer = stored_parquet.remote_footer(store, part.stored_key, part.size)
                    file_rows = stored_parquet.footer_metadata(footer).num_rows
                    if footers is not None:
                        footers[part.stored_key] = footer
            except (ValueError, OSError, pa.ArrowException) as exc:  # a damaged footer or block
                problems.append(f"table {name!r}: {fmt.title()} file {_unreadable(store, part, exc)}")
                continue
            if file_rows != part.rows:
                problems.append(
                    f"table {name!r}: {fmt.title()} file {store.where(part.stored_key)} holds {file_rows} rows, "
                    f"manifest says {part.rows}"
                )
    finally:
        if local is not None:
            local.cleanup()
    total = sum(p.rows or 0 for p in parts)
    if total != table_rows(entry):
        problems.append(f"table {name!r}: part files hold {total} rows, manifest says {table_rows(entry)}")
    return problems, paths


def _unreadable(store: BackupStore, part: ManifestEntry, exc: Exception) -> str:
    """Why a part file could not be read: gone, stored with another size than the backup wrote
    (its footer was looked for at the recorded size), else the reader's error."""
    where, stored = store.where(part.stored_key), store.stat(part.stored_key)
    if stored is None:
        return f"{where} is missing"
    if int(stored.size or 0) != part.size:
        return f"{where} is stored with {stored.size} bytes, the backup wrote {part.size}"
    return f"{where} unreadable ({exc})"


def _check_content(
    entry: ManifestEntry, paths: list[str], sample_percent: float | None
) -> tuple[list[str], list[np.ndarray]]:
    """(problems, sampled row hashes): every row of a table's downloaded files hashed and the digest
    (in the scheme the backup recorded) compared with the one taken while reading the source; the
    row hashes of a `sample_percent` sample kept for a comparison with the source (None: none)."""
    scheme, expected = digest_scheme(entry.metadata), entry.metadata.get("content_digest")
    sample_hash, own_hash = row_hasher(), row_hasher(scheme)  # the sample is always compared in scheme 2
    digest, sampled = TableDigest(), []
    for path in paths:
        # decoded on a thread of its own (Arrow's decoder releases the GIL) while the last batch is hashed
        for batch in prefetch(file_batches(path, data_format_of(entry), entry.metadata["schema"])):
            hashes = sample_hash(batch)
            if sample_percent is not None:
                sampled.append(hashes[sample_mask(hashes, sample_percent)])
            if expected:
                digest.add(hashes if scheme == DIGEST_SCHEME else own_hash(batch))
    if expected and digest.hexdigest != expected:
        return [
            f"table {entry.name!r}: the backup's files hold other rows than the backup read "
            f"(content digest {digest.hexdigest}, manifest says {expected})"
        ], sampled
    return [], sampled


def _compare_sample(
    read_client: Any,
    project: str,
    dataset: str,
    entry: ManifestEntry,
    backed_up: list[np.ndarray],
    percent: float,
    manifest: Any,
) -> list[str]:
    """Sampled row hashes of the backup's files against those of the source read again."""
    geo = geography_columns(entry.metadata["schema"])
    source = [
        h[sample_mask(h, percent)]
        for h in map(
            row_hasher(),
            bqio.read_batches(read_client, project, dataset, entry.name, manifest.started_at, geo),
        )
    ]
    mine = np.sort(np.concatenate(backed_up)) if backed_up else np.array([], dtype=np.uint64)
    theirs = np.sort(np.concatenate(source)) if source else np.array([], dtype=np.uint64)
    if mine.size != theirs.size or not np.array_equal(mine, theirs):
        only_backup = np.setdiff1d(mine, theirs).size
        only_source = np.setdiff1d(theirs, mine).size
        return [
            f"table {entry.name!r}: sampled rows differ from the source ({mine.size} sampled in the backup, "
            f"{theirs.size} in the source; {only_backup} only in the backup, {only_source} only in the source)"
        ]
    return []


# -- restore -------------------------------------------------------------------------------
def apply_dataset_restore(
    settings: BackstopSettings,
    store: BackupStore,
    manifest: BackupManifest,
    plan: RestorePlan,
    overwrite: bool,
) -> None:
    """Create the dataset (or reapply its metadata when planned and allowed), then every table and
    view that is not unchanged; with overwrite, drop the tables an exact restore deletes."""
    client, _ = clients(settings)
    exists, meta = plan.private
    notes: list[str] = []
    reapply = any(a.get("kind") == "dataset" and a["change"] == "replace" for a in plan.actions) and overwrite
    if not exists or reapply:
        ensure_dataset(
            client, settings.project, plan.target, meta, same=plan.target == manifest.source, notes=notes
        )
    plan.actions += [{"name": plan.target, "change": "note", "why": note} for note in notes]
    by_name = {e.name: e for e in manifest.entries}
    for action in [a for a in plan.actions if "table" in a]:
        if action["change"] == "unchanged" or (action["change"] == "replace" and not overwrite):
            continue
        entry = by_name[action["table"]]
        restore_table(settings, store, entry, plan.target, manifest.source, replace=action["existing"] != "absent",
                      load=action["rows"] > 0, parts=parts_of(manifest, entry))  # fmt: skip
    for action in [a for a in plan.actions if "drop" in a and overwrite]:
        with converted_errors(f"BigQuery table {action['target']}"):
            client.delete_table(action["target"], not_found_ok=True, timeout=TIMEOUT, retry=RETRY)


def restore_table(
    settings: BackstopSettings,
    store: BackupStore,
    entry: ManifestEntry,
    target: str,
    source: str,
    replace: bool = False,
    load: bool = True,
    parts: list[ManifestEntry] | None = None,
) -> int:
    """Recreate one table or view from its entry, then load its data files; returns rows loaded."""
    client, _ = clients(settings)
    project = settings.project
    ref = f"{project}.{target}.{entry.name}"
    if replace:
        with converted_errors(f"BigQuery table {ref}"):
            client.delete_table(ref, not_found_ok=True, timeout=TIMEOUT, retry=RETRY)
    if load and entry.metadata.get("snapshot_table"):
        return restore_from_snapshot(client, entry, ref, settings.kms_key_name)
    create_table(
        client, build_table(project, target, entry.name, entry.metadata, source, settings.kms_key_name)
    )
    if not load or entry.metadata["kind"] != "table":
        return 0
    loaded = 0
    fmt = data_format_of(entry)
    for part in parts or [entry]:
        path = bqio.temp_path("." + fmt)
        try:
            store.get_file(part.stored_key, path)
            loaded += bqio.load_parquet(client, path, ref, data_format=fmt)
        finally:
            os.unlink(path)
    return loaded


def verify_restored(
    settings: BackstopSettings,
    manifest: BackupManifest,
    target: str,
    only: list[str] | None = None,
    schema_only: bool = False,
    exclude: list[str] | None = None,
) -> list[str]:
    """Differences between the restored dataset `target` and the backup: row counts and content
    digests (of the tables in `only`, none of those in `exclude`)."""
    client, read_client = clients(settings)
    project = settings.project
    problems = []
    for entry in manifest.entries:
        if entry.metadata.get("kind") != "table" or (only and entry.name not in only):
            continue
        if exclude and entry.name in exclude:
            continue
        geo = geography_columns(entry.metadata["schema"])
        try:
            # hashed as the backup was: old backups recorded scheme 1 (no key)
            digest = bqio.table_digest(
                read_client, project, target, entry.name, geo, digest_scheme(entry.metadata)
            )
        except NotFound:
            problems.append(f"table {entry.name!r}: missing in {project}.{target}")
            continue
        if schema_only:
            if digest.rows:
                problems.append(f"table {entry.name!r}: {digest.rows} rows in a schema-only restore")
        elif digest.rows != table_rows(entry):
            problems.append(
                f"table {entry.name!r}: {digest.rows} rows restored, backup holds {table_rows(entry)}"
            )
        elif entry.metadata.get("content_digest") not in (
            None,
            digest.hexdigest,
        ):  # extract backups have none
            problems.append(f"table {entry.name!r}: restored content differs from the backup (content hash)")
    return problems
