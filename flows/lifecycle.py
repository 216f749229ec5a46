"""What every component's flows do: backup, validate and restore, over the lifecycle.

Plain functions run inside the flow that calls them (no subflows): the per-component modules
(flows/gcs.py, ...) are the flows, named entry points with typed parameter forms for the Prefect
UI and prefect.yaml, each a call of one function here. Parameter names are the same everywhere: `sources` / `source`, `target`,
`backup_id`, `before`, `only`, `overwrite`, `dry_run`, `skip_damaged`, `options`,
`validate_after`, `sample_percent`, `settings_block`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from backstop.core.errors import BackstopError, ConfigError, ValidationFailed
from backstop.core.manifest import BackupManifest
from backstop.core.names import check_backup_id
from backstop.core.report import human_bytes
from blocks.settings import DEFAULT_BLOCK_NAME, load_settings
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine import lifecycle, restore
from tasks.engine.protocol import RestoreRequest, get_component
from tasks.storage.bucket import open_store

MAX_ACTION_ROWS = 500


def backup_row(manifest: BackupManifest) -> dict[str, Any]:
    """One table row: the backup and the counts of its source state (lists counted, `counts` spread)."""
    state = manifest.source_state
    counts: dict[str, Any] = {}
    for key, value in (state | state.get("counts", {})).items():
        if isinstance(value, list):
            counts[key] = len(value)
        elif isinstance(value, int | float) and not isinstance(value, bool) and key != "bytes":
            counts[key] = value
    return {
        "component": manifest.component,
        "source": manifest.source,
        "backup_id": manifest.backup_id,
        "entries": manifest.entry_count,
        "size": human_bytes(manifest.total_bytes),
        **counts,
        "seconds": round(manifest.duration_seconds or 0, 2),
        "status": manifest.status,
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

    A failing source does not stop the others; the run fails at the end naming every failure.
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
            rows.append({"component": chosen.name, "source": source, "status": f"failed: {exc}"[:300]})
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
    """Validate one backup (by id, any component), or the latest of `source` / of every scheduled source."""
    settings = load_settings(settings_block)
    store = open_store(settings)
    if backup_id:
        manifests = [index.find(store, check_backup_id(backup_id))]
    else:
        if component is None:
            raise ConfigError("name a backup id, or a component (and a source)")
        chosen = get_component(component)
        manifests = [
            catalog.resolve_backup(store, chosen.name, s, validated_only=False)
            for s in _sources(chosen, settings, [source] if source else None)
        ]
    rows, failures = [], []
    for manifest in manifests:
        try:
            checked = lifecycle.validate(manifest.component, settings, manifest, sample_percent, store)
            record = checked.validation
            rows.append(backup_row(checked) | {"read_back": record.read_back if record else 0})
        except ValidationFailed as exc:
            failures.append((manifest.source, exc))
            rows.append(backup_row(manifest) | {"status": "invalid", "problems": "; ".join(exc.problems[:3])})
    create_table_artifact(rows, key="validation", description="Validation")
    _raise_failures("validation", failures)
    return rows


def restore_backup(
    component: str,
    source: str,
    target: str | None = None,
    backup_id: str | None = None,
    before: str | None = None,
    only: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    skip_damaged: bool = False,
    options: dict[str, Any] | None = None,
    settings_block: str = DEFAULT_BLOCK_NAME,
    exact: bool = False,
) -> dict[str, Any]:
    """Restore a backup of `source` (whole, or the parts in `only`) into it or into `target`.

    Without `overwrite` nothing existing is replaced or deleted; a restore that would change the
    original location pauses for approval (default deny) when run from the UI. With `exact`, what
    the target holds in the restored scope that the backup does not is deleted (with overwrite).
    """
    settings = load_settings(settings_block)
    request = RestoreRequest(
        source, target, backup_id, before, only, overwrite, dry_run, skip_damaged, options, exact
    )
    report = restore.restore(component, settings, request)
    summary = report.summary()
    log = get_run_logger()
    log.info("restore %s: %s", "plan (dry run)" if dry_run else "done", summary)
    for action in report.actions:
        if action["change"] in ("skipped", "note", "blocked"):
            log.warning("%s: %s %s", action["change"], action.get("name"), action.get("why", ""))
    create_table_artifact([summary], key=f"{component}-restore", description=f"{component} restore")
    if report.actions:
        shown = [{k: v for k, v in a.items() if k != "diff"} for a in report.actions[:MAX_ACTION_ROWS]]
        create_table_artifact(
            shown, key=f"{component}-restore-actions", description="What the restore did or would do"
        )
    diffs = [f"### {a['name']}\n```diff\n{a['diff']}```" for a in report.actions if a.get("diff")]
    if diffs:
        create_markdown_artifact(
            "\n\n".join(diffs), key=f"{component}-restore-diff", description="What would change"
        )
    return summary | {"actions": report.actions, "conflicted": report.conflicts}
