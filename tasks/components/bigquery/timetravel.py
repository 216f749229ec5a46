"""Point-in-time restore straight from BigQuery (time travel), with no backup files involved.

Within BigQuery's time-travel window (7 days by default) a dataset's tables can be copied as they
were at a moment T: each table is recreated from its current definition (schema, partitioning,
clustering, labels) in the target dataset and filled with
`INSERT ... SELECT * FROM <table> FOR SYSTEM_TIME AS OF T`; views follow in dependency order.
Tables whose schema changed since T need a restore from a backup instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound
from backstop.core.names import check_dataset
from blocks.settings import BackstopSettings
from tasks.components.bigquery import history
from tasks.components.bigquery.backup import NAME, clients, list_tables, table_metadata, view_definition
from tasks.components.bigquery.create import build_table, ensure_dataset, resource_exists
from tasks.components.bigquery.plan import has_rows
from tasks.components.bigquery.schema import view_order
from tasks.engine.protocol import RestoreReport
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors


def default_target(dataset: str, moment: datetime) -> str:
    """`<dataset>_restored_<yyyymmddThhmmss>`."""
    return check_dataset(f"{dataset}_restored_{moment:%Y%m%dT%H%M%S}")


def restore_as_of(
    settings: BackstopSettings,
    dataset: str,
    moment: datetime,
    target: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
) -> RestoreReport:
    """Copy `dataset` (or the tables in `only`) as it was at `moment` into `target` (created if missing)."""
    start = time.monotonic()
    client, _ = clients(settings)
    project = settings.project
    target = check_dataset(target or default_target(dataset, moment))
    if target == dataset:
        raise InvalidInput("a point-in-time restore needs another target dataset than its source")
    if moment > datetime.now(UTC):
        raise InvalidInput(f"{moment.isoformat()} is in the future: nothing to restore as of it")
    with converted_errors(f"BigQuery dataset {project}.{dataset}"):  # a missing one lists no tables
        client.get_dataset(f"{project}.{dataset}", timeout=TIMEOUT, retry=RETRY)
    names = list_tables(client, project, dataset, only)
    if not names:
        raise NotFound(f"BigQuery dataset {project}.{dataset} holds no table or view: nothing to restore")
    metas: dict[str, dict[str, Any]] = {}
    for name in names:
        with converted_errors(f"BigQuery table {project}.{dataset}.{name}"):
            meta = table_metadata(
                client.get_table(f"{project}.{dataset}.{name}", timeout=TIMEOUT, retry=RETRY)
            )
        if meta["kind"] == "view" and not (meta["view_query"] or meta["mview_query"]):
            meta["view_query"] = view_definition(client, project, dataset, name)
        metas[name] = meta
    tables = sorted(n for n, m in metas.items() if m["kind"] == "table")
    views = view_order(
        {n: m["view_query"] or m["mview_query"] or "" for n, m in metas.items() if n not in tables}, dataset
    )
    report = RestoreReport(NAME, dataset, f"as-of {moment.isoformat()}", target, dry_run=dry_run)
    exists = resource_exists(lambda: client.get_dataset(f"{project}.{target}", timeout=TIMEOUT, retry=RETRY))
    rows: dict[str, int] = {}
    for name in tables:  # checked before anything is written
        count = history.count_as_of(client, project, dataset, name, moment)
        if count is None:
            raise InvalidInput(
                f"{moment.isoformat()} is outside BigQuery's time-travel window for {project}.{dataset}.{name}: "
                "restore from a backup"
            )
        rows[name] = count
    for name in tables + views:
        state = "absent"
        if exists:
            try:
                with converted_errors(f"BigQuery table {project}.{target}.{name}"):
                    current = client.get_table(f"{project}.{target}.{name}", timeout=TIMEOUT, retry=RETRY)
                state = "non-empty" if has_rows(client, current) else "empty"
            except BackstopError as exc:
                if "not found" not in str(exc):
                    raise
        if state == "non-empty" and not overwrite:
            report.conflicts.append(name)
        report.actions.append({"table": name, "kind": metas[name]["kind"], "existing": state, "rows": rows.get(name, 0),
                               "action": "copy as of " + moment.isoformat() if name in tables else "create view"})  # fmt: skip
    if report.conflicts and not dry_run:
        raise Conflict(
            f"restore would overwrite non-empty table(s) {', '.join(report.conflicts)} in {project}.{target}: "
            "pass overwrite=True (--overwrite) or choose another --target"
        )
    if dry_run:
        report.seconds = time.monotonic() - start
        return report
    ensure_dataset(client, project, target, {}, same=False)
    for action in report.actions:
        name = action["table"]
        ref = f"{project}.{target}.{name}"
        with converted_errors(f"BigQuery table {ref}"):
            if action["existing"] != "absent":
                client.delete_table(ref, not_found_ok=True, timeout=TIMEOUT, retry=RETRY)
            client.create_table(
                build_table(project, target, name, metas[name], dataset), timeout=TIMEOUT, retry=RETRY
            )
        if name in tables:
            _copy_as_of(client, f"{project}.{dataset}.{name}", ref, moment)
        report.created += action["existing"] == "absent"
        report.overwritten += action["existing"] != "absent"
    report.seconds = time.monotonic() - start
    return report


def _copy_as_of(client: Any, source: str, target: str, moment: datetime) -> None:
    sql = f"INSERT INTO `{target}` SELECT * FROM `{source}` FOR SYSTEM_TIME AS OF TIMESTAMP '{moment.isoformat()}'"
    retry = history.time_travel_retry()
    try:
        with converted_errors(f"copying {source} as of {moment.isoformat()} into {target}"):
            client.query(sql, timeout=TIMEOUT, retry=retry).result(timeout=600, retry=retry)
    except BackstopError as exc:
        if history.outside_window(exc):
            raise InvalidInput(
                f"{moment.isoformat()} is outside BigQuery's time-travel window for {source}: restore from a backup"
            ) from exc
        raise
