"""Re-verification of kept backups, for every component (backstop/core/reverify.py has the rules).

For each component / source: every validated backup's stored objects are compared with the bucket's
listing, the objects in this run's window are downloaded and checksummed, and what the backup holds
outside the bucket is checked to still exist. The sources are taken in at most MAX_TASKS batches;
the downloads of a batch, all its sources' and backups' together (an object several backups share is
read once), run as units on the settings' task runner, and what differs is told to every backup
that holds it. A
damaged backup is marked "invalid", one whose outside data is gone "expired" (a manifest update and
a catalog status record, like validation), so no restore, drill or restore point chooses it again.
The secondary copies (another region) are re-read the same way, with the same window: a damaged
copy is marked invalid in the secondary bucket, so a restore falling back to it refuses it. The
run's report is written to the backup bucket; the caller fails the run when anything was found.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backstop.core.errors import BackstopError, NotFound, ValidationFailed
from backstop.core.manifest import utcnow
from backstop.core.reverify import (
    VERIFY_PREFIX,
    SourceResult,
    VerificationReport,
    in_window,
    new_run_id,
    position,
    share_for,
    window_start,
)
from blocks.settings import BackstopSettings
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.catalog.stored import (
    SHOWN,
    ReadBack,
    SharedCheck,
    StoredCheck,
    read_back,
    read_back_problem,
    verify_stored,
)
from tasks.engine import units
from tasks.engine.lifecycle import loaded
from tasks.engine.protocol import COMPONENTS, Context, get_component, stored_options
from tasks.storage.bucket import BackupStore, open_store

log = logging.getLogger(__name__)
MAX_TASKS = 200  # Prefect task runs per flow run stay in the hundreds: sources are batched


Checked = tuple[Any, StoredCheck, list[str]]  # a backup's manifest, its check, its data gone outside


@dataclass
class Reads:
    """The objects the sources of one batch chose to re-read, each once, and who holds each: stored
    key -> [key, name, size, crc32c], and stored key -> (its source's backup checks by id, the
    backup id, the entry name)."""

    wanted: dict[str, list[Any]] = field(default_factory=dict)
    holders: dict[str, list[tuple[dict[str, Checked], str, str]]] = field(default_factory=dict)


def check_source(
    settings: BackstopSettings,
    store: BackupStore,
    component_name: str,
    source: str,
    start: float,
    share: float,
    copy: str,
    reads: Reads,
) -> tuple[SourceResult, dict[str, Checked]]:
    """Compare every validated backup of one source in `store` with the bucket's listing and add
    the objects in the window to `reads` (read later, for a whole batch of sources at once)."""
    component = get_component(component_name)
    result = SourceResult(component=component_name, source=source, where=copy)
    headers = [
        h for h in index.read_headers(store, component_name, source, on_damaged=log.warning) if h.validated
    ]
    checked: dict[str, Checked] = {}

    def chosen(key: str) -> bool:
        return in_window(position(key), start, share)

    # One listing of the bucket for all the backups, and each chunk they share compared once.
    with SharedCheck(store) as shared:
        for header in sorted(headers, key=lambda h: (h.started_at, h.backup_id), reverse=True):
            try:
                manifest = index.load(store, header)
            except NotFound:
                continue  # pruned while we ran
            except ValidationFailed as exc:
                result.damaged[header.backup_id] = [str(exc)]  # unreadable: nothing to mark it in
                continue

            def later(item: list[Any], backup_id: str = manifest.backup_id) -> None:
                if item[0] not in reads.wanted:  # read once: its bytes count for the first source to ask
                    reads.wanted[item[0]] = item
                    result.bytes_read += int(item[2] or 0)
                reads.holders.setdefault(item[0], []).append((checked, backup_id, item[1]))

            try:
                stored = verify_stored(store, manifest, 0, read=chosen, later=later, shared=shared)
            except ValidationFailed as exc:  # a chunk of its manifest is missing or damaged
                stored = StoredCheck(problems=[str(exc)])
            gone: list[str] = []
            if copy == "primary":
                ctx = Context(settings, store, stored_options(component, manifest))
                gone = component.gone_outside(ctx, loaded(component, store, manifest))
            checked[manifest.backup_id] = (manifest, stored, gone)
            result.backups += 1
            result.objects += stored.checked
            result.read_back += stored.read_back
    return result, checked


def read_all(
    settings: BackstopSettings, store: BackupStore, label: str, reads: Reads, results: list[SourceResult]
) -> None:
    """Re-read every object of `reads` once, in units on the settings' task runner (spanning
    backups and sources); tell what differs to each backup that holds it. A unit names at most
    SHOWN objects that differ: the others, which no backup can be told of, are said for every
    source of `results` (the run fails; no backup is marked for them)."""

    def done(found: ReadBack) -> None:
        for _name, key, got, _problem in found.differs:
            for checked, backup_id, name in reads.holders[key]:
                stored = checked[backup_id][1]
                problem = read_back_problem(store, [key, name, *reads.wanted[key][2:]], got)
                if problem:
                    stored.problems.append(problem)
                    stored.damaged[name] = problem
        for result in results if found.more else []:
            result.damaged.setdefault("-", []).append(
                f"{found.more} object(s) differ on read-back in {store.where()} beyond the {SHOWN} "
                "a unit names (no backup was marked for them): run `backstop verify` again"
            )

    batches = units.UnitBatches(Context(settings, store), "verify", label)
    batches.run(functools.partial(read_back, store), iter(reads.wanted.values()), done)


def finish_source(
    settings: BackstopSettings, store: BackupStore, result: SourceResult, checked: dict[str, Checked]
) -> SourceResult:
    """Mark each checked backup of one source invalid or expired by what was found."""
    for manifest, stored, gone in checked.values():
        if gone:
            result.expired[manifest.backup_id] = gone
            catalog.record_reverification(
                store, manifest, "expired", gone + stored.problems, stored.read_back
            )
            if result.where == "primary":
                _expire_secondary(settings, manifest, gone)
        elif stored.problems:
            result.damaged[manifest.backup_id] = stored.problems
            catalog.record_reverification(store, manifest, "invalid", stored.problems, stored.read_back)
    return result


def _expire_secondary(settings: BackstopSettings, manifest: Any, gone: list[str]) -> None:
    """Mark the secondary copy of an expired backup expired too: its outside data is the same, so a
    restore falling back to the secondary must not choose it either. (A backup damaged in the primary
    stays chosen in the secondary, whose copy was verified on its own.)"""
    if manifest.secondary is None or not manifest.secondary.ok or not settings.secondary_bucket:
        return
    secondary = open_store(settings, secondary=True)
    try:
        there = secondary.read_manifest(manifest.path)
    except (NotFound, ValidationFailed) as exc:
        log.warning("secondary copy of expired backup %s not marked: %s", manifest.backup_id, exc)
        return
    catalog.record_reverification(secondary, there, "expired", gone, 0)


def _batch(
    settings: BackstopSettings,
    store: BackupStore,
    pairs: list[tuple[str, str]],
    starts: dict[str, float],
    share: float,
    copy: str = "primary",
    label: str = "verify",
) -> list[SourceResult]:
    """Re-verify the sources of `pairs`: each compared with the listing, then what they chose read
    at once (units spanning the sources, so task runs follow the batches, not the sources)."""
    reads, out, checked = Reads(), [], []
    for component_name, source in pairs:
        try:
            checked.append(
                check_source(
                    settings, store, component_name, source, starts[component_name], share, copy, reads
                )
            )
        except BackstopError as exc:  # one source's trouble (a service down) must not hide the others
            out.append(_not_reverified(component_name, source, copy, exc))
    try:
        read_all(settings, store, f"{label}-read", reads, [result for result, _ in checked])
    except BackstopError as exc:  # the bucket unreachable while reading: no source was re-verified
        return out + [_not_reverified(r.component, r.source, copy, exc) for r, _ in checked]
    return out + [finish_source(settings, store, result, backups) for result, backups in checked]


def _not_reverified(component: str, source: str, copy: str, exc: BaseException) -> SourceResult:
    """A result saying why `component/source` (or a whole bucket) could not be re-verified."""
    found = SourceResult(component=component, source=source, where=copy)
    found.damaged["-"] = [f"could not be re-verified: {exc}"]
    return found


def reverify(
    settings: BackstopSettings,
    store: BackupStore,
    components: list[str] | None = None,
    share: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> VerificationReport:
    """Re-verify the kept backups of `components` (all when None), reading `share` of the ring
    (default: the settings' reverify_every_days / reverify_period_days); write and return the report."""
    names = [get_component(c).name for c in (components or list(COMPONENTS))]
    share = (
        share if share is not None else share_for(settings.reverify_period_days, settings.reverify_every_days)
    )
    reports = read_reports(store)
    report = VerificationReport(
        run_id=new_run_id(), at=utcnow(), share=share, starts={c: window_start(reports, c) for c in names}
    )
    copies = [("primary", store)]
    if settings.secondary_bucket:
        copies.append(("secondary", open_store(settings, secondary=True)))
    for copy, where in copies:
        try:
            pairs = [(c, s) for c, s in index.sources(where) if c in names]
        except BackstopError as exc:  # e.g. the secondary bucket unreachable: said, the rest still read
            report.sources.append(_not_reverified("-", where.where(), copy, exc))
            continue
        report.sources += _in_batches(settings, where, pairs, report, share, copy, progress)
    report.finished_at = utcnow()
    store.put_bytes(report.path, report.model_dump_json(indent=1).encode(), content_type="application/json")
    return report


def _in_batches(
    settings: BackstopSettings,
    store: BackupStore,
    pairs: list[tuple[str, str]],
    report: VerificationReport,
    share: float,
    copy: str,
    progress: Callable[[str], None] | None,
) -> list[SourceResult]:
    """Re-verify `pairs` in at most MAX_TASKS task runs (units on the runner)."""
    results: list[SourceResult] = []
    size = max(1, -(-len(pairs) // MAX_TASKS))
    for i in range(0, len(pairs), size):
        chunk = pairs[i : i + size]
        label = f"reverify-{copy}-{chunk[0][0]}-{chunk[0][1]}" + (
            f"-and-{len(chunk) - 1}-more" if len(chunk) > 1 else ""
        )
        found = units.step(label, _batch, settings, store, chunk, report.starts, share, copy, label)
        results += found
        for result in found:
            if progress is not None:
                progress(
                    f"{result.component}/{result.source} ({copy}): {result.backups} backup(s), "
                    f"{result.read_back} object(s) re-read, {len(result.damaged)} damaged, "
                    f"{len(result.expired)} expired"
                )
    return results


def read_reports(
    store: BackupStore, newest: int = 20, on_damaged: Callable[[str], None] | None = None
) -> list[VerificationReport]:
    """The newest re-verification reports in the bucket (their names sort by time)."""
    keys = sorted(store.list(VERIFY_PREFIX))[-newest:]
    found = []
    for key in keys:
        try:
            found.append(VerificationReport.model_validate_json(store.get_bytes(key)))
        except NotFound:
            continue
        except ValueError as exc:
            (on_damaged or log.warning)(
                f"{store.where(key)}: damaged re-verification report ({str(exc).splitlines()[0]})"
            )
    return found


def summary_rows(report: VerificationReport) -> list[dict[str, Any]]:
    """One row per source for people."""
    return [
        {
            "component": r.component,
            "source": r.source,
            "copy": r.where,
            "backups": r.backups,
            "objects": r.objects,
            "read_back": r.read_back,
            "bytes_read": r.bytes_read,
            "damaged": ", ".join(r.damaged) or "-",
            "expired": ", ".join(r.expired) or "-",
        }
        for r in report.sources
    ]
