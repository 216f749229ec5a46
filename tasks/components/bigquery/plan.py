"""Restore plans of BigQuery backups: what a restore into a dataset would change, compared honestly.

An existing table or view is "unchanged" when it is the backup's (schema, the recreated metadata,
and every row by content digest; a view by its SQL), "replace" when it differs and holds data (a
view in the way counts as data), "create" when it is missing or empty. Dataset labels and
description that differ are a "replace". An exact restore of a whole dataset also deletes the
tables and views the backup does not hold (added after it).
"""

from __future__ import annotations

from typing import Any

from backstop.core.errors import NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.names import check_dataset, check_table
from blocks.settings import BackstopSettings
from tasks.components.bigquery import data as bqio
from tasks.components.bigquery.backup import (
    DATASET_ENTRY,
    VIEW_TYPES,
    clients,
    table_metadata,
    view_definition,
)
from tasks.components.bigquery.create import resource_exists
from tasks.components.bigquery.digest import digest_scheme
from tasks.components.bigquery.schema import geography_columns, view_order
from tasks.engine.protocol import RestorePlan
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors


def table_rows(entry: ManifestEntry) -> int:
    return int(entry.metadata.get("table_rows", entry.rows or 0))


# What a table's entry says that a restore recreates (besides schema and data): compared to say
# whether an existing table is the backup's.
COMPARED = (
    "kind",
    "time_partitioning",
    "range_partitioning",
    "clustering_fields",
    "require_partition_filter",
    "labels",
    "description",
    "friendly_name",
)


def differences(
    client: Any, read_client: Any, current: Any, entry: ManifestEntry, schema_only: bool
) -> list[str]:
    """How the existing table or view `current` differs from its backup entry (empty: it is the backup's).

    Views: their SQL. Tables: schema, the metadata in COMPARED and the content digest of every
    row (a backup without a digest, made by an extract job, counts rows only).
    """
    now = table_metadata(current)
    saved = entry.metadata
    found = [key for key in COMPARED if (now.get(key) or None) != (saved.get(key) or None)]
    if saved.get("kind") == "view":
        sql = now["view_query"] or now["mview_query"]
        if not sql and current.table_type in VIEW_TYPES:
            sql = view_definition(client, current.project, current.dataset_id, current.table_id)
        if (sql or "").strip() != (saved.get("view_query") or saved.get("mview_query") or "").strip():
            found.append("SQL")
        return found
    if now["fingerprint"] != saved.get("fingerprint"):
        return [*found, "schema"]
    if found:
        return found
    geography = geography_columns(saved["schema"])
    digest = bqio.table_digest(  # hashed as the backup was (scheme 1 for backups that name none)
        read_client, current.project, current.dataset_id, current.table_id, geography, digest_scheme(saved)
    )
    wanted_rows = 0 if schema_only else table_rows(entry)
    if digest.rows != wanted_rows:
        return [f"{digest.rows} rows, the backup {wanted_rows}"]
    if not schema_only and saved.get("content_digest") not in (None, digest.hexdigest):
        return ["content"]
    return []


def plan_restore(
    settings: BackstopSettings,
    manifest: BackupManifest,
    target: str,
    only: list[str] | None,
    overwrite: bool,
    schema_only: bool,
    dataset_exists: bool = True,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The ordered actions of a restore (tables, then views in dependency order) and the conflicts.

    An existing table or view identical to the backup is left alone ("keep"); a conflict is a
    non-empty table (or a view) that differs, which the restore would replace, without `overwrite`.
    """
    client, read_client = clients(settings)
    project = settings.project
    by_name = {e.name: e for e in manifest.entries if e.name != DATASET_ENTRY}
    if only:
        missing = [check_table(t) for t in only if t not in by_name]
        if missing:
            raise NotFound(
                f"table(s) {', '.join(missing)} not in backup {manifest.backup_id} of {manifest.source}"
            )
        by_name = {n: by_name[n] for n in only}
    existing = listed_tables(client, f"{project}.{target}") if dataset_exists else set()
    actions: list[dict[str, Any]] = []
    conflicts = []
    tables = sorted(n for n, e in by_name.items() if e.metadata.get("kind") == "table")
    views = view_order(
        {n: e.metadata.get("view_query") or e.metadata.get("mview_query") or "" for n, e in by_name.items()
         if e.metadata.get("kind") == "view"},
        manifest.source,
    )  # fmt: skip
    for name in tables + views:
        entry, ref = by_name[name], f"{project}.{target}.{name}"
        state, why = "absent", []
        if name in existing:
            with converted_errors(f"BigQuery table {ref}"):
                current = client.get_table(ref, timeout=TIMEOUT, retry=RETRY)
            why = differences(client, read_client, current, entry, schema_only)
            in_way = current.table_type in VIEW_TYPES or has_rows(client, current)  # a view is replaced
            state = "identical" if not why else "non-empty" if in_way else "empty"
            if state == "non-empty" and not overwrite:
                conflicts.append(name)
        kind = entry.metadata["kind"]
        load = kind == "table" and not schema_only and table_rows(entry) > 0
        verb = ("refuse (differs)" if name in conflicts else "keep (identical)" if state == "identical"
                else "replace" if state != "absent" else "create")  # fmt: skip
        actions.append({"table": name, "kind": kind, "target": ref, "existing": state,
                        "action": verb + (" + load" if load and state != "identical" else ""),
                        "rows": table_rows(entry) if load else 0, "why": ", ".join(why)})  # fmt: skip
    return actions, conflicts


def listed_tables(client: Any, dataset: str) -> set[str]:
    """Table and view ids of `dataset` (which exists)."""
    with converted_errors(f"BigQuery dataset {dataset}"):
        return {t.table_id for t in client.list_tables(dataset, timeout=TIMEOUT, retry=RETRY)}


def has_rows(client: Any, table: Any) -> bool:
    """num_rows, or one row read (num_rows leaves out streaming buffers, and some services lag)."""
    if table.table_type in VIEW_TYPES:
        return False
    if (table.num_rows or 0) > 0:
        return True
    with converted_errors(f"BigQuery table {table.full_table_id}"):
        rows = client.list_rows(table, max_results=1, timeout=TIMEOUT, retry=RETRY)
        return any(True for _ in rows)


def _metadata_changes(client: Any, ref: str, meta: dict[str, Any]) -> list[str]:
    """What reapplying the saved labels and description would change on an existing dataset."""
    with converted_errors(f"BigQuery dataset {ref}"):
        current = client.get_dataset(ref, timeout=TIMEOUT, retry=RETRY)
    changes = []
    labels = dict(current.labels or {})
    if labels | dict(meta.get("labels") or {}) != labels:
        changes.append("labels")
    if (meta.get("description") or None) != (current.description or None):
        changes.append("description")
    return changes


def plan_dataset_restore(
    settings: BackstopSettings,
    manifest: BackupManifest,
    target: str,
    only: list[str] | None = None,
    schema_only: bool = False,
    exact: bool = False,
    exclude: list[str] | None = None,
) -> RestorePlan:
    """What restoring `manifest` into dataset `target` changes: the dataset, then tables and views in order.

    A table or view identical to the backup is "unchanged"; a non-empty table or a view that differs,
    or saved dataset labels / description that differ from the target's, is a "replace" (the lifecycle
    refuses it without overwrite); an empty table is recreated. With `exact`, the tables and views of
    the target that the backup does not hold are "delete"s, when the backup was of the whole dataset
    and the restore is too (a backup of chosen tables deletes nothing). The tables in `exclude` (left
    to a newer backup of them in the same restore) are neither planned nor deleted.
    """
    if exclude:
        kept = [e for e in manifest.entries if e.name not in exclude]
        manifest = manifest.model_copy(update={"entries": kept})
    client, _ = clients(settings)
    project, target = settings.project, check_dataset(target)
    ref = f"{project}.{target}"
    meta = next((e.metadata for e in manifest.entries if e.name == DATASET_ENTRY), {})
    exists = resource_exists(lambda: client.get_dataset(ref, timeout=TIMEOUT, retry=RETRY))
    actions, _ = plan_restore(settings, manifest, target, only, True, schema_only, exists)
    head: list[dict[str, Any]] = []
    if not exists:
        head.append({"name": ref, "change": "create", "kind": "dataset", "action": "create dataset"})
    elif meta:
        changes = _metadata_changes(client, ref, meta)
        head.append(
            {"name": ref, "change": "replace", "kind": "dataset", "action": "set " + ", ".join(changes)}
            if changes
            else {"name": ref, "change": "unchanged", "kind": "dataset", "action": "keep (identical)"}
        )
    change = {"identical": "unchanged", "non-empty": "replace"}
    for action in actions:
        action["name"] = action["table"]
        action["change"] = change.get(action["existing"], "create")
    whole = not only and not manifest.options.get("tables")
    if exact and exists and whole:
        held = {e.name for e in manifest.entries}
        actions += [
            {"name": name, "drop": name, "target": f"{ref}.{name}", "change": "delete", "action": "delete",
             "why": "not in the backup"}
            for name in sorted(listed_tables(client, ref) - held - set(exclude or ()))
        ]  # fmt: skip
    return RestorePlan(
        target=target, into_original=target == manifest.source, actions=head + actions, private=(exists, meta)
    )
