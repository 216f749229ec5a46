"""Configuration files flows: backup (one archive per source), validate, restore.

One task per source (backup, then validation); a failing source does not stop the others, and the
run fails at the end naming every failed source. Skipped secrets are listed by path in the log and
in an artifact, never with content.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from backstop.errors import BackstopError, ConfigError, ValidationFailed
from backstop.manifest import BackupManifest
from backstop.names import check_source_name, parse_time
from backstop.report import human_bytes
from blocks.clients import storage_client
from blocks.components import ConfigSource
from blocks.settings import BackstopSettings, load_settings
from flows.approval import approve_overwrite
from flows.hooks import HOOKS
from tasks import catalog, configs
from tasks.context import open_store


@task(name="backup-config-source", cache_policy=NO_CACHE)
def backup_source(settings: BackstopSettings, source: ConfigSource) -> BackupManifest:
    """Archive one source and commit its manifest."""
    log = get_run_logger()
    manifest = configs.backup_source(open_store(settings), source, storage_client(settings.project))
    state = manifest.source_state
    log.info(
        "configs/%s: %d files (%s) from %s archived as %s",
        source.name,
        state["file_count"],
        human_bytes(state["bytes"]),
        source.path,
        human_bytes(manifest.total_bytes),
    )
    for skipped in state["skipped_secrets"]:
        log.warning("configs/%s: left out %s (%s)", source.name, skipped["path"], skipped["reason"])
    for warning in state["syntax_warnings"]:
        log.warning("configs/%s: %s", source.name, warning)
    return manifest


@task(name="validate-config-backup", cache_policy=NO_CACHE)
def validate_backup(settings: BackstopSettings, manifest: BackupManifest) -> BackupManifest:
    """Archive integrity, every file's sha256, syntax (warnings unless strict_syntax)."""
    strict = configs.configs_settings(settings).strict_syntax
    checked, warnings = configs.validate_backup(open_store(settings), manifest, strict)
    get_run_logger().info(
        "configs/%s %s: %d files verified, %d syntax warnings",
        manifest.source,
        manifest.backup_id,
        len(configs.manifest_files(manifest)),
        len(warnings),
    )
    return checked


def summary_row(manifest: BackupManifest) -> dict[str, Any]:
    state = manifest.source_state
    return {
        "source": manifest.source,
        "backup_id": manifest.backup_id,
        "path": state.get("path"),
        "files": state.get("file_count"),
        "size": human_bytes(state.get("bytes", 0)),
        "archive": human_bytes(manifest.total_bytes),
        "skipped_secrets": len(state.get("skipped_secrets", [])),
        "syntax_warnings": len(state.get("syntax_warnings", [])),
        "status": manifest.status,
    }


def chosen_sources(
    settings: BackstopSettings, names: list[str] | None, path: str | None, name: str | None
) -> list[ConfigSource]:
    if path:
        return [ConfigSource(name=check_source_name(name or "adhoc"), path=path)]
    configured = configs.configs_settings(settings).sources
    if names:
        return [configs.find_source(settings, n) for n in names]
    if not configured:
        raise ConfigError("no configuration sources: add settings.configs.sources or pass a path")
    return configured


def secrets_report(manifests: list[BackupManifest]) -> str:
    lines = ["# Configuration backup: files left out or flagged", ""]
    for manifest in manifests:
        state = manifest.source_state
        lines.append(f"## {manifest.source} ({manifest.backup_id})")
        skipped = state.get("skipped_secrets", [])
        lines += [f"- left out `{s['path']}`: {s['reason']}" for s in skipped] or ["- no secrets left out"]
        lines += [f"- syntax warning: `{w}`" for w in state.get("syntax_warnings", [])]
        lines.append("")
    return "\n".join(lines)


@flow(name="backup-configs", **HOOKS)
def backup_configs(
    sources: list[str] | None = None,
    path: str | None = None,
    name: str | None = None,
    validate_after: bool = True,
    settings_block: str = "default",
) -> list[dict[str, Any]]:
    """Back up configuration sources (default: every one in settings.configs.sources).

    Args:
        sources: names of configured sources.
        path: an ad hoc local directory or gs://bucket/prefix to back up instead (on-demand runs).
        name: source name for `path` in the catalog (default 'adhoc').
        validate_after: validate each backup after it is committed.
        settings_block: name of the Backstop settings block.
    """
    settings = load_settings(settings_block)
    rows, done, failed = [], [], []
    for source in chosen_sources(settings, sources, path, name):
        try:
            manifest = backup_source(settings, source)
            if validate_after:
                manifest = validate_backup(settings, manifest)
        except BackstopError as exc:
            get_run_logger().error("configs/%s failed: %s", source.name, exc)
            failed.append(f"{source.name}: {exc}")
            rows.append({"source": source.name, "path": source.path, "status": "failed"})
            continue
        done.append(manifest)
        rows.append(summary_row(manifest))
    create_table_artifact(rows, key="configs-backup-summary", description="Configuration files backup")
    create_markdown_artifact(
        secrets_report(done), key="configs-skipped-secrets", description="Left out as secrets"
    )
    if failed:
        raise BackstopError(f"{len(failed)} configuration source(s) failed: " + "; ".join(failed))
    return rows


@flow(name="validate-configs", **HOOKS)
def validate_configs(
    sources: list[str] | None = None, backup_id: str | None = None, settings_block: str = "default"
) -> list[dict[str, Any]]:
    """Validate one backup (by id) or the latest backup of each named / configured source."""
    settings = load_settings(settings_block)
    store = open_store(settings)
    if backup_id:
        manifests = [catalog.resolve_backup(store, configs.NAME, backup_id=backup_id)]
    else:
        names = sources or [s.name for s in configs.configs_settings(settings).sources]
        if not names:
            raise ConfigError(
                "nothing to validate: name sources or a backup id, or add settings.configs.sources"
            )
        manifests = [catalog.resolve_backup(store, configs.NAME, n, validated_only=False) for n in names]
    rows, problems = [], []
    for manifest in manifests:
        try:
            rows.append(summary_row(validate_backup(settings, manifest)))
        except ValidationFailed as exc:
            problems += exc.problems or [str(exc)]
            rows.append(summary_row(manifest) | {"status": "invalid"})
    create_table_artifact(rows, key="configs-validation", description="Configuration files validation")
    if problems:
        raise ValidationFailed(f"{len(problems)} problem(s): " + "; ".join(problems[:5]), problems)
    return rows


@flow(name="restore-configs", **HOOKS)
def restore_configs(
    source: str,
    backup_id: str | None = None,
    before: str | None = None,
    target: str | None = None,
    files: list[str] | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    settings_block: str = "default",
    approved: bool = False,
) -> dict[str, Any]:
    """Restore a source's files (all, or those matching `files`) to their place or `target`.

    Args:
        source: the backed-up source name.
        backup_id: the backup to restore; default the latest validated one (before `before`).
        before: ISO time; take the latest validated backup started at or before it.
        target: local directory or gs://bucket/prefix; default where the files came from.
        files: paths or glob patterns ('pipelines/*.yaml'); default every file.
        overwrite: replace files whose content differs (never without it).
        dry_run: report created / changed / unchanged files with diffs; write nothing.
        approved: approve overwriting the original up front; without it such a restore pauses for
            approval in the Prefect UI (default deny).
    """
    approve_overwrite(
        f"restore of configuration source {source}",
        overwrite,
        dry_run,
        target in (None, "", source),
        approved,
    )
    settings = load_settings(settings_block)
    store = open_store(settings)
    manifest = catalog.resolve_backup(
        store,
        configs.NAME,
        check_source_name(source),
        backup_id=backup_id,
        before=parse_time(before) if before else None,
    )
    report = configs.restore_backup(
        store, manifest, target, files, overwrite, dry_run, storage_client(settings.project)
    )
    get_run_logger().info(
        "restore of configs/%s %s to %s: %d created, %d overwritten, %d unchanged, %d conflicts%s",
        source,
        manifest.backup_id,
        report.target,
        report.created,
        report.overwritten,
        report.unchanged,
        len(report.conflicts),
        " (dry run)" if dry_run else "",
    )
    rows = [{k: v for k, v in a.items() if k != "diff"} for a in report.actions]
    create_table_artifact(
        rows or [{"path": "", "action": "none"}], key="configs-restore", description=report.target
    )
    diffs = [f"### {a['path']}\n```diff\n{a['diff']}```" for a in report.actions if a.get("diff")]
    if diffs:
        create_markdown_artifact(
            "\n\n".join(diffs), key="configs-restore-diff", description="What would change"
        )
    return report.summary() | {"actions": report.actions, "conflicted": report.conflicts}
