"""The backup lifecycle every component shares: begin, commit, record, resolve (checking the stored
objects is tasks/catalog/stored.py).

A component fills a manifest's entries (each with the `stored_key` that holds its bytes in the
backup bucket); this module does what is the same for all of them, so no component re-implements
"write the manifest last" or "check every stored object against its checksum".
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from backstop.core.errors import InvalidInput, NotFound, ValidationFailed
from backstop.core.manifest import (
    BackupManifest,
    ManifestEntry,
    ValidationRecord,
    new_backup_id,
    select,
    utcnow,
)
from backstop.core.names import check_backup_id, check_percent
from backstop.core.runs import RUNS_PREFIX, RunRecord, is_transient, new_run_id
from tasks.catalog import index, locks
from tasks.storage.bucket import BackupStore
from tasks.storage.spool import EntrySpool


def begin_backup(
    store: BackupStore, component: str, source: str, options: dict[str, Any] | None = None
) -> BackupManifest:
    """A new, uncommitted manifest; marks the run in progress so prune leaves shared data alone."""
    store.check_bucket()
    started = utcnow()
    manifest = BackupManifest(
        backup_id=new_backup_id(started),
        component=component,
        source=source,
        started_at=started,
        options=options or {},
        kms_key_name=store.kms_key_name,
    )
    store.mark_in_progress(manifest)
    return manifest


HEARTBEAT_SECONDS = 3600.0  # a running backup's sign of life (BackupStore.in_progress waits 24 hours)


@contextlib.contextmanager
def beating(store: BackupStore, manifest: BackupManifest, every: float | None = None) -> Iterator[None]:
    """While the body runs, add a heartbeat beside the run's in-progress marker every `every`
    seconds (default HEARTBEAT_SECONDS): a backup that runs for days stays in progress, so prune
    neither sweeps the copies it has made nor its checkpoints. A heartbeat that fails is logged;
    the backup goes on."""
    stop = threading.Event()
    every = every or HEARTBEAT_SECONDS

    def beat() -> None:
        while not stop.wait(every):
            try:
                store.mark_in_progress(manifest, beat=utcnow())
            except Exception as exc:  # a transient failure: the next beat may pass
                logging.getLogger(__name__).warning(
                    "heartbeat of %s not written: %s", manifest.backup_id, str(exc).splitlines()[0]
                )

    thread = threading.Thread(target=beat, name=f"heartbeat-{manifest.backup_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def commit_backup(
    store: BackupStore,
    manifest: BackupManifest,
    entries: list[ManifestEntry] | EntrySpool,
    source_state: dict[str, Any] | None = None,
    reuse: locks.Reuse | None = None,
) -> BackupManifest:
    """Write the manifest (last), clear the in-progress marker, lock the backup (`reuse`: what its
    lock can skip, tasks/catalog/locks.py). Returns the committed manifest (a large one as its
    header). `entries` may be a spool: they are then streamed in name order."""
    committed = manifest.model_copy(
        update={
            "entries": [],
            "source_state": source_state or manifest.source_state,
            "finished_at": utcnow(),
            "status": "complete",
        }
    )
    spool = entries if isinstance(entries, EntrySpool) else EntrySpool(entries)
    try:
        committed = index.write_manifest(store, committed, spool.rows())
    finally:
        if spool is not entries:
            spool.close()
    store.clear_in_progress(manifest)
    problems = locks.lock_committed(store, committed, reuse)  # retained until its keep date (locks.py)
    if problems:
        logging.getLogger(__name__).warning(
            "backup %s committed but not locked (%d objects; prune locks it): %s",
            committed.backup_id,
            len(problems),
            problems[0],
        )
    return committed


def abandon_backup(store: BackupStore, manifest: BackupManifest) -> None:
    """Clear the in-progress marker of a failed run (its data stays for prune to sweep)."""
    # The store may be what failed; the marker then expires on its own.
    with contextlib.suppress(Exception):
        store.clear_in_progress(manifest)


def record_validation(
    store: BackupStore, manifest: BackupManifest, problems: list[str], checked: int, read_back: int
) -> BackupManifest:
    """Rewrite the manifest with the validation outcome; raise ValidationFailed when problems exist."""
    record = ValidationRecord(
        at=utcnow(), ok=not problems, checked=checked, read_back=read_back, problems=problems[:200]
    )
    updated = manifest.model_copy(
        update={"validation": record, "status": "validated" if not problems else "invalid"}
    )
    updated = index.write_manifest(store, updated)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValidationFailed(
            f"backup {manifest.backup_id} of {manifest.component}/{manifest.source} failed validation: {shown}",
            problems,
        )
    return updated


def record_reverification(
    store: BackupStore, manifest: BackupManifest, status: str, problems: list[str], read_back: int
) -> BackupManifest:
    """Mark a kept backup `status` ("invalid": damaged, "expired": data outside the bucket gone),
    written like a validation (a manifest update and a catalog status record), so that every
    chooser of a backup skips it from now on. Never raises for the problems: the caller reports."""
    record = ValidationRecord(
        at=utcnow(), ok=False, checked=manifest.entry_count, read_back=read_back, problems=problems[:200]
    )
    return index.write_manifest(store, manifest.model_copy(update={"validation": record, "status": status}))


def resolve_backup(
    store: BackupStore,
    component: str,
    source: str | None = None,
    backup_id: str | None = None,
    before: datetime | None = None,
    validated_only: bool = True,
    on_damaged: Callable[[str], None] | None = None,
    where: Callable[[BackupManifest], bool] | None = None,
) -> BackupManifest:
    """The backup to restore: `backup_id`, or the latest (validated) one before `before`.

    `where` narrows the choice further (e.g. a Composer backup that holds the DAGs part).
    """
    if backup_id:
        check_backup_id(backup_id)
        manifest = index.find(store, backup_id)
        if manifest.component != component:
            raise InvalidInput(f"backup {backup_id} is a {manifest.component} backup, not {component}")
        if source is not None and manifest.source != source:
            raise InvalidInput(
                f"backup {backup_id} is of {component} source {manifest.source!r}, not {source!r}: nothing restored"
            )
        return manifest
    report = on_damaged or (lambda _: None)
    headers = [  # an expired backup's data outside the bucket is gone: never chosen, validated or not
        h
        for h in select(
            index.read_headers(store, component, source, on_damaged=report),
            component,
            source,
            before,
            validated_only,
        )
        if not h.expired
    ]
    chosen = index.first_loadable(store, headers, where, report, validated_only)
    if chosen is None and where is not None:  # none holds all that is asked: the newest (said by the caller)
        chosen = index.first_loadable(store, headers, None, report, validated_only)
    if chosen is None:
        what = f"{component}/{source}" if source else component
        kind = "validated backup" if validated_only else "backup"
        when = f" before {before.isoformat()}" if before else ""
        raise NotFound(f"no {kind} of {what}{when} in {store.where()}")
    return chosen


PENDING_MAX = 10  # backups of one source a validation without an id takes, newest first


def backups_to_validate(
    store: BackupStore, component: str, sources: list[str], on_damaged: Callable[[str], None] | None = None
) -> list[BackupManifest]:
    """What a validation without a backup id takes, source by source: every backup written and not
    validated yet (newest first, at most PENDING_MAX), else the latest backup (validated or not).

    A validation triggered by one backup so also takes another of the same source that landed
    meanwhile (a manual backup beside a scheduled one), which "the latest" alone would leave
    unvalidated for good: never chosen by a restore. A damaged header is reported, not raised."""
    report = on_damaged or logging.getLogger(__name__).warning
    out: list[BackupManifest] = []
    for source in sources:
        written = [h for h in index.read_headers(store, component, source, report) if h.status == "complete"]
        pending = []
        for header in sorted(written, key=lambda h: (h.started_at, h.backup_id), reverse=True)[:PENDING_MAX]:
            with contextlib.suppress(NotFound):  # pruned meanwhile
                pending.append(index.load(store, header))
        out += pending or [resolve_backup(store, component, source, validated_only=False, on_damaged=report)]
    return out


def sample_percent(settings: Any, override: float | None) -> float:
    """The share of objects validation re-reads: `override`, else the settings' default."""
    return check_percent(
        settings.validate_sample_percent if override is None else override, "sample percentage"
    )


# -- run records (backstop/core/runs.py) -----------------------------------------------------------
def record_run(
    store: BackupStore,
    kind: str,
    component: str,
    source: str,
    error: BaseException | None = None,
    backup_id: str | None = None,
    details: dict[str, Any] | None = None,
    refused: bool = False,
) -> RunRecord | None:
    """Record how a run ended (best effort: a store that is down must not hide the run's own error).
    `refused`: the run was refused for its input (outcome "refused", not a failure)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    error_kind = None if error is None else type(error).__name__
    message = "" if error is None else (str(error) or error_kind or "")[:2000]
    outcome = (
        "succeeded" if error is None else ("abandoned" if not isinstance(error, Exception) else "failed")
    )
    outcome = "refused" if refused and error is not None else outcome
    try:
        previous = list_runs(store, component, source, limit_days=2) if error is not None else []
        record = RunRecord(
            run_id=new_run_id(kind),
            kind=kind,  # type: ignore[arg-type]
            component=component,
            source=source,
            outcome=outcome,  # type: ignore[arg-type]
            at=utcnow(),
            backup_id=backup_id,
            error_kind=error_kind,
            transient=is_transient(error_kind, message, [p for p in previous if p.kind == kind]),
            message=message,
            flow_run_id=str(context.flow_run.id) if context and context.flow_run else None,
            details=details or {},
        )
        store.put_bytes(
            record.path, record.model_dump_json(indent=1).encode(), content_type="application/json"
        )
        return record
    except Exception:  # the store itself may be what failed
        return None


def list_runs(
    store: BackupStore,
    component: str | None = None,
    source: str | None = None,
    limit_days: int | None = None,
    on_damaged: Callable[[str], None] | None = None,
) -> list[RunRecord]:
    """Run records under the component / source prefix, newest first (only the last days if asked)."""
    prefix = RUNS_PREFIX + (
        "" if component is None else f"{component}/" + ("" if source is None else f"{source}/")
    )
    now = utcnow()
    found = []
    for key, blob in store.list(prefix).items():
        if limit_days is not None and blob.time_created and (now - blob.time_created).days > limit_days:
            continue
        try:
            found.append(RunRecord.model_validate_json(store.get_bytes(key)))
        except ValueError as exc:
            if on_damaged is not None:
                on_damaged(f"{store.where(key)}: damaged run record ({str(exc).splitlines()[0]})")
    found = [r for r in found if source is None or r.source == source]
    return sorted(found, key=lambda r: (r.at, r.run_id), reverse=True)
