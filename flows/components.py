"""Every component's flows: backup-<name>, validate-<name>, restore-<name>, made from the registry.

`component_flows("gcs")` gives the three flows of a component, each with a typed parameter form in
the Prefect UI (the component's options model included); flows/<name>.py names them for
prefect.yaml's entrypoints. What they do is the plain functions below (`backup_sources`,
`validate_backups`, `restore_backup`), run inside the flow that calls them (no subflows). Parameter
names are the same everywhere: `sources` / `source`, `target`, `backup_id`, `before`, `only`,
`overwrite`, `dry_run`, `skip_damaged`, `options`, `validate_after`, `sample_percent`, `settings_block`.

A restore refused for its input (a backup of another source, one that would overwrite without
`overwrite`, an unknown or malformed name) ends in a Cancelled state named "Refused": the user's
mistake is said, and no alert is sent nor a failure counted.

This module keeps its annotations evaluated (no `from __future__ import annotations`): Prefect
builds each form from the function's signature, and `Options` is the component's own model.
"""

import functools
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Cancelled

from backstop.core.errors import REFUSALS, BackstopError, ConfigError, ValidationFailed
from backstop.core.manifest import BackupManifest
from backstop.core.names import check_backup_id
from backstop.core.report import human_bytes, joined, summarized
from backstop.core.restore_points import part_rows
from blocks.settings import DEFAULT_BLOCK_NAME, load_settings
from flows.hooks import backstop_flow
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine import lifecycle, restore
from tasks.engine.protocol import RestoreRequest, get_component
from tasks.storage.bucket import open_store

MAX_ACTION_ROWS = 500
REFUSED = "Refused"  # the name of the state a restore refused for its input ends in


def backup_row(manifest: BackupManifest) -> dict[str, Any]:
    """One table row: the backup and the counts of its source state (lists counted, `counts` spread;
    `size` is what the backup stores, `source_...` sizes are what the source's service reports)."""
    state = manifest.source_state
    counts: dict[str, Any] = {}
    for key, value in (state | state.get("counts", {})).items():
        if isinstance(value, list):
            counts[key] = len(value)
        elif isinstance(value, bool) or not isinstance(value, int | float) or key == "bytes":
            continue
        elif key.endswith("_bytes"):  # a size the service reports (not what the backup stores)
            counts[f"source_{key.removesuffix('_bytes')}"] = human_bytes(value)
        else:
            counts[key] = value
    return {  # what matters first (status, source, size, time): the UI's artifact is read left to right
        "status": manifest.status,
        "component": manifest.component,
        "source": manifest.source,
        "size": human_bytes(manifest.total_bytes),
        "started_utc": f"{manifest.started_at:%Y-%m-%d %H:%M:%S}",
        "seconds": round(manifest.duration_seconds or 0, 2),
        "entries": manifest.entry_count,
        "backup_id": manifest.backup_id,
        **counts,
    }


def _sources(component: Any, settings: Any, sources: list[str] | None) -> list[str]:
    chosen = sources or component.sources(settings)
    if not chosen:
        raise ConfigError(
            f"no {component.name} {component.noun}s given and the settings schedule none: name one or add it to the settings"
        )
    return [component.check_source(settings, s) for s in chosen]


def _raise_failures(what: str, failures: Sequence[tuple[str, BaseException]]) -> None:
    """Fail the run after every source was tried, naming each failed source."""
    if not failures:
        return
    if len(failures) == 1:
        raise failures[0][1]
    problems = [f"{source}: {exc}" for source, exc in failures]
    raise BackstopError(f"{len(failures)} {what}(s) failed: " + " | ".join(problems))


def backup_sources(
    component: str,
    sources: list[str] | None = None,
    options: dict[str, Any] | None = None,
    validate_after: bool = True,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Back up sources of one component (default: those the settings schedule), then validate each.

    A failing source does not stop the others; the run fails at the end naming every failure. A
    source that cannot be found fails the run too (and alerts): a scheduled source gone is drift.
    """
    settings = load_settings(settings_block)
    chosen = get_component(component)
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, BaseException]] = []
    notes: list[str] = []
    for source in _sources(chosen, settings, sources):
        try:
            manifest = lifecycle.backup(
                chosen.name, settings, source, options, validate_after, sample_percent
            )
            rows.append(backup_row(manifest))
            notes += chosen.notes(manifest)
        except BackstopError as exc:
            get_run_logger().error("%s/%s failed: %s", chosen.name, source, exc)
            failures.append((source, exc))
            rows.append({"status": f"failed: {exc}", "component": chosen.name, "source": source})
    create_table_artifact(rows, key=f"{chosen.name}-backup-summary", description=f"{chosen.name} backup")
    if notes:
        create_markdown_artifact(
            "\n".join(notes), key=f"{chosen.name}-backup-notes", description="Left out or flagged"
        )
    _raise_failures("backup", failures)
    return rows


def validate_backups(
    component: str | None = None,
    backup_id: str | None = None,
    source: str | None = None,
    sample_percent: float | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
) -> list[dict[str, Any]]:
    """Validate one backup (by id, any component), or of `source` / of every scheduled source the
    backups written and not validated yet, else its latest (`catalog.backups_to_validate`)."""
    settings = load_settings(settings_block)
    store = open_store(settings)
    if backup_id:
        manifests = [index.find(store, check_backup_id(backup_id))]
    else:
        if component is None:
            raise ConfigError("name a backup id, or a component (and a source)")
        chosen = get_component(component)
        sources = _sources(chosen, settings, [source] if source else None)
        manifests = catalog.backups_to_validate(store, chosen.name, sources, get_run_logger().warning)
    rows, failures = [], []
    for manifest in manifests:
        started = time.monotonic()
        try:
            checked = lifecycle.validate(manifest.component, settings, manifest, sample_percent, store)
            record = checked.validation
            took = round(time.monotonic() - started, 2)  # the validation's time, not the backup's
            rows.append(
                backup_row(checked) | {"read_back": record.read_back if record else 0, "seconds": took}
            )
        except ValidationFailed as exc:
            failures.append((manifest.source, exc))
            rows.append(backup_row(manifest) | {"status": "invalid", "problems": joined(exc.problems, 3)})
    create_table_artifact(rows, key="validation", description="Validation")
    _raise_failures("validation", failures)
    return rows


def restore_backup(
    component: str, request: RestoreRequest, settings_block: str = DEFAULT_BLOCK_NAME
) -> dict[str, Any]:
    """Restore a backup of `request.source` (whole, or the parts in `request.only`) as it asks.

    Without `overwrite` nothing existing is replaced or deleted; a restore that would change the
    original location pauses for approval (default deny) when run from the UI.
    """
    settings = load_settings(settings_block)
    report = restore.restore(component, settings, request)
    summary = report.summary()
    log = get_run_logger()
    log.info("restore %s: %s", "plan (dry run)" if request.dry_run else "done", summary)
    for action in report.actions:
        if action["change"] in ("skipped", "note", "blocked"):
            log.warning("%s: %s %s", action["change"], action.get("name"), action.get("why", ""))
    shown_summary = {k: v for k, v in summary.items() if k != "parts"}  # the parts: a table of their own
    create_table_artifact([shown_summary], key=f"{component}-restore", description=f"{component} restore")
    parts = part_rows(report.parts)
    if parts:
        create_table_artifact(
            parts,
            key=f"{component}-restore-parts",
            description="Which backup each part of the restore point came from",
        )
    if report.actions:
        ordered = summarized(report.actions, MAX_ACTION_ROWS)  # by folder when they do not fit
        shown = [{k: v for k, v in a.items() if k != "diff"} for a in ordered[:MAX_ACTION_ROWS]]
        left_out = len(ordered) - len(shown)
        create_table_artifact(
            shown,
            key=f"{component}-restore-actions",
            description="What the restore did or would do"
            + (f" ({len(report.actions):,} actions, by folder)" if len(ordered) < len(report.actions) else "")
            + (f" (first {len(shown)}; {left_out} more in the flow's result)" if left_out else ""),
        )
    diffs = [f"### {a['name']}\n```diff\n{a['diff']}```" for a in report.actions if a.get("diff")]
    if diffs:
        create_markdown_artifact(
            "\n\n".join(diffs), key=f"{component}-restore-diff", description="What would change"
        )
    return summary | {"actions": report.actions, "conflicted": report.conflicts}


def refused_or_restored(component: str, request: RestoreRequest, settings_block: str) -> Any:
    """The restore's summary, or a Cancelled state named "Refused" when its input is refused
    (the caller of the flow gets the error itself; no failure hook or automation fires)."""
    try:
        return restore_backup(component, request, settings_block)
    except REFUSALS as exc:
        get_run_logger().warning("restore refused: %s", exc)
        return Cancelled(name=REFUSED, message=f"refused: {exc}", data=exc)


def _dump(options: Any) -> dict[str, Any] | None:
    if options is None or isinstance(options, dict):
        return options or None
    return options.model_dump(exclude_unset=True) or None


def flow_parameters(request: RestoreRequest) -> dict[str, Any]:
    """The restore flow's parameters for `request`: what is not given is empty, as in the UI's form
    (`exclude` is the restore's own, never a user's)."""
    given = {f.name: getattr(request, f.name) for f in fields(RestoreRequest) if f.name != "exclude"}
    for name in ("target", "backup_id", "before"):
        given[name] = given[name] or ""
    given["only"] = list(request.only or [])
    if given["options"] is None:
        del given["options"]  # the component's defaults
    return given


VERBS = ("backup", "validate", "restore")


def component_flows(name: str) -> tuple[Any, Any, Any]:
    """(backup, validate, restore) flows of the registered component `name` (made once: flows/<name>.py
    and the CLI share them)."""
    return component_flow(name, "backup"), component_flow(name, "validate"), component_flow(name, "restore")


@functools.cache
def component_flow(name: str, verb: str) -> Any:
    """The `verb` flow (one of VERBS) of the registered component `name`, made once. The CLI makes
    only the one it runs: Prefect builds each flow's parameter form when the flow is made (~0.1 s)."""
    fn = _flow_functions(name)[verb]
    fn.__name__ = fn.__qualname__ = f"{verb}_{name}"
    return backstop_flow(name=f"{verb}-{name}")(fn)


@functools.cache
def _flow_functions(name: str) -> dict[str, Any]:
    """The plain functions of the flows of component `name`, by verb, with their parameter forms' types."""
    component = get_component(name)
    Options = component.Options  # noqa: N806 (a type, named as one)
    default_options = Options()
    noun, part = component.noun, component.part

    def backup(
        sources: list[str] = [],  # noqa: B006 (the form's default: what the settings schedule)
        options: Options = default_options,  # type: ignore[valid-type]
        validate_after: bool = True,
        sample_percent: float = 0,
        settings_block: str = DEFAULT_BLOCK_NAME,
    ) -> list[dict[str, Any]]:
        return backup_sources(
            name, sources or None, _dump(options), validate_after, sample_percent or None, settings_block
        )

    def validate(
        backup_id: str = "",
        source: str = "",
        sample_percent: float = 0,
        settings_block: str = DEFAULT_BLOCK_NAME,
    ) -> list[dict[str, Any]]:
        return validate_backups(
            name, backup_id or None, source or None, sample_percent or None, settings_block
        )

    # Plain fields with defaults a person can type into in the UI's run form (no "None" toggles):
    # an empty text or list means "not given"; the component's options are shown with their defaults.
    def restore(
        source: str,
        target: str = "",
        backup_id: str = "",
        before: str = "",
        only: list[str] = [],  # noqa: B006 (the form's default; never changed)
        overwrite: bool = False,
        dry_run: bool = False,
        skip_damaged: bool = False,
        options: Options = default_options,  # type: ignore[valid-type]
        settings_block: str = DEFAULT_BLOCK_NAME,
        exact: bool = False,
    ) -> dict[str, Any] | State:
        request = RestoreRequest(
            source, target or None, backup_id or None, before or None, only or None,
            overwrite, dry_run, skip_damaged, _dump(options), exact,
        )  # fmt: skip
        return refused_or_restored(name, request, settings_block)

    _document(name, noun, part, backup, validate, restore)
    return {"backup": backup, "validate": validate, "restore": restore}


def _document(name: str, noun: str, part: str, backup: Any, validate: Any, restore: Any) -> None:
    backup.__doc__ = f"""Back up {name} {noun}s (default: those the settings schedule), then validate each.

    Args:
        sources: {noun}s to back up (empty: those the settings schedule).
        options: options of the {name} component.
        validate_after: validate each backup after it is committed (a failure fails the run).
        sample_percent: share of stored objects validation re-reads (0: the settings' share).
        settings_block: name of the Backstop settings block.
    """
    validate.__doc__ = f"""Validate one backup (by id), or the latest of `source` / of every scheduled {noun}.

    Args:
        backup_id: the backup to validate (empty: the latest of `source`).
        source: the {noun} whose latest backup to validate (empty: every scheduled {noun}).
        sample_percent: share of stored objects re-read (0: the settings' share).
        settings_block: name of the Backstop settings block.
    """
    restore.__doc__ = f"""Restore a {name} backup (whole, or {part}s) into the original {noun} or `target`.

    Args:
        source: the backed-up {noun}.
        target: where to restore (empty: the original {noun}).
        backup_id: the backup to restore (empty: the latest validated one, before `before`).
        before: ISO time; take the latest validated backup started at or before it (empty: now).
        only: restore only these {part}s (empty: all).
        overwrite: replace or delete existing data that differs (never without it).
        dry_run: only report what would change.
        skip_damaged: restore what is intact of a damaged backup (the rest is named).
        options: options of the {name} component.
        settings_block: name of the Backstop settings block.
        exact: also delete what the target holds in the restored scope that the backup does not
            (added after the backup), with `overwrite`: the target as it was at the backup.
    Changing the original {noun} pauses for approval in the UI (default deny).
    A restore refused for its input ends "Refused" (no alert, not a failure).
    """
