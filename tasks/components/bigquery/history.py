"""Row counts of a table as of a moment (BigQuery time travel), and the local emulator's one bug there."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backstop.core.errors import BackstopError, NotFound
from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors


def outside_window(exc: BaseException) -> bool:
    """Whether an error says a time-travel moment is outside the table's window."""
    text = str(exc)
    return "outOfRange" in text or "time travel" in text.lower() or "retention window" in text


def time_travel_retry() -> Any:
    """RETRY, except for "outside the time-travel window", which is permanent."""
    from google.api_core.retry import if_transient_error

    return RETRY.with_predicate(lambda exc: if_transient_error(exc) and not outside_window(exc))


def count_as_of(
    client: Any, project: str, dataset: str, table: str, moment: datetime, live_on_emulator: bool = False
) -> int | None:
    """Row count of a table at `moment` (time travel); None when outside the time-travel window.

    `live_on_emulator`: where the local emulator fails the time-travel query with its own bug
    (`emulator_time_travel_bug`), count the table as it is now, which is what that emulator's time
    travel answers for a table it has not snapshotted (it keeps no history, and its read sessions
    read the live table too). Backups and validation pass it; a point-in-time restore does not (it
    must not copy today's rows for yesterday's). Against BigQuery the fallback never runs.
    """
    retry = time_travel_retry()
    at = moment.isoformat()
    sql = f"SELECT COUNT(*) AS n FROM `{project}.{dataset}.{table}` FOR SYSTEM_TIME AS OF TIMESTAMP '{at}'"
    try:
        with converted_errors(f"counting rows of {project}.{dataset}.{table} as of {at}"):
            rows = list(client.query(sql, timeout=TIMEOUT, retry=retry).result(timeout=TIMEOUT, retry=retry))
    except BackstopError as exc:
        if not isinstance(exc, NotFound) and outside_window(exc):
            return None
        if live_on_emulator and emulator_time_travel_bug(exc, project, dataset):
            sql = f"SELECT COUNT(*) AS n FROM `{project}.{dataset}.{table}`"
            with converted_errors(f"counting rows of {project}.{dataset}.{table}"):
                rows = list(
                    client.query(sql, timeout=TIMEOUT, retry=RETRY).result(timeout=TIMEOUT, retry=RETRY)
                )
            return int(rows[0][0])
        raise
    return int(rows[0][0])


def emulator_time_travel_bug(exc: BaseException, project: str, dataset: str) -> bool:
    """Whether `exc` is bqemulator's (1.4) failure of `FOR SYSTEM_TIME AS OF` on a table it holds a
    snapshot of: it rewrites the reference into its own internal schema name
    `<project>__<dataset>_backstop_snapshots`, then rejects that name ('Invalid dataset ID'). BigQuery
    names only the dataset a query gave it in that error, never a `<project>__...` name, so only the
    emulator's bug matches.
    """
    return f'Invalid dataset ID "{project}__{dataset}' in str(exc)
