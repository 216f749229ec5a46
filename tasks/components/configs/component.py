"""Configuration files component: local directories and gs:// prefixes, one tar.gz per backup.

Manifest layout (one choice, kept simple):
- one entry, `configs.tar.gz`, the archive under the backup's folder (size, crc32c, sha256);
- `source_state["files"]`: every archived file as {path, size, mode, mtime, sha256};
- `source_state["skipped_secrets"]`: [{path, reason}] left out as secrets (paths only, never content);
- `source_state["syntax_warnings"]`: files that did not parse at backup time (file and line).

Syntax problems are warnings, not failures: a file that was already broken at the source is still
backed up faithfully, and a backup that refuses to exist because someone committed a bad YAML file
is worse than one that says so. `validate` fails on integrity problems (archive unreadable, a file
missing, extra or with another sha256, stored object size/crc32c wrong); with
`ConfigsSettings.strict_syntax` on, syntax problems fail it too.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from backstop.core.archive import (
    ARCHIVE_NAME,
    HEAD_BYTES,
    ArchiveWriter,
    FileRecord,
    check_member_name,
    compare_files,
    extract_archive,
    is_selected,
    iter_archive,
    matches,
    needs_whole_file,
    secret_reason,
    syntax_problem,
)
from backstop.core.errors import InvalidInput, NotFound, ValidationFailed
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.names import check_source_name
from blocks.components import ConfigSource, ConfigsSettings
from blocks.settings import BackstopSettings
from tasks.catalog import stored
from tasks.components.configs.locations import Location, collect_gcs, collect_local, open_location
from tasks.components.configs.options import NOUN, PART, ConfigsOptions
from tasks.engine.protocol import BackupPlan as LifecyclePlan
from tasks.engine.protocol import Context, LifecycleMethods, RestorePlan, RestoreRequest
from tasks.storage import scratch
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import crc32c_b64

NAME = "configs"
SCRATCH_PREFIX = "backstop-configs-"

log = logging.getLogger("backstop.configs")


def configs_settings(settings: BackstopSettings | None) -> ConfigsSettings:
    """The `configs` settings of `settings` (defaults when the field is absent)."""
    raw = getattr(settings, "configs", None)
    if raw is None:
        return ConfigsSettings()
    if isinstance(raw, ConfigsSettings):
        return raw
    return ConfigsSettings.model_validate(raw if isinstance(raw, dict) else raw.model_dump())


def find_source(
    settings: BackstopSettings | None, name: str, sources: list[ConfigSource] | None = None
) -> ConfigSource:
    """The source `name` from `sources` or the settings; NotFound lists the known names."""
    check_source_name(name)
    known = list(sources or []) + configs_settings(settings).sources
    for source in known:
        if source.name == name:
            return source
    names = ", ".join(sorted(s.name for s in known)) or "none configured"
    raise NotFound(f"configuration source {name!r} is not configured (known: {names})")


def absolute(source: ConfigSource) -> ConfigSource:
    """`source` with a local path made absolute: restoring "to the original place" must not depend on the cwd."""
    if source.path.startswith("gs://"):
        return source
    return source.model_copy(update={"path": str(Path(source.path).expanduser().absolute())})


def archive_source(
    store: BackupStore, manifest: BackupManifest, source: ConfigSource, client: Any | None = None
) -> tuple[ManifestEntry, dict[str, Any]]:
    """Archive `source` into the backup's folder; returns its entry and the source state."""
    with scratch.directory("backstop-configs-build-") as tmp:
        archive = Path(tmp) / ARCHIVE_NAME
        writer = ArchiveWriter(archive)
        try:
            if source.path.startswith("gs://"):
                found = collect_gcs(source, writer, client or store.client)
            else:
                found = collect_local(source, writer)
        finally:
            writer.close()
        if not found.files:
            raise NotFound(
                f"configuration source {source.name!r}: no files in {source.path} match include "
                f"{source.include} (exclude {source.exclude}, {len(found.skipped_secrets)} secrets left out)"
            )
        key = manifest.folder + ARCHIVE_NAME
        data = archive.read_bytes()
        store.put_bytes(key, data, content_type="application/gzip")
    entry = ManifestEntry(
        name=ARCHIVE_NAME,
        stored_key=key,
        size=len(data),
        crc32c=crc32c_b64(data),
        sha256=hashlib.sha256(data).hexdigest(),
        metadata={"files": len(found.files)},
    )
    state = {
        "path": source.path,
        # what the source selects: an exact restore deletes only files these patterns take
        "include": source.include,
        "exclude": source.exclude,
        "include_secrets": source.include_secrets,
        "file_count": len(found.files),
        "bytes": sum(f.size for f in found.files),
        "files": [f.to_dict() for f in found.files],
        "skipped_secrets": found.skipped_secrets,
        "included_secrets": found.included_secrets,
        "skipped_other": found.skipped_other,
        "syntax_warnings": found.warnings,
    }
    return entry, state


def manifest_files(manifest: BackupManifest) -> list[FileRecord]:
    return [FileRecord.from_dict(item) for item in manifest.source_state.get("files", [])]


def _download_archive(store: BackupStore, manifest: BackupManifest, folder: str) -> Path:
    entry = next((e for e in manifest.entries if e.name == ARCHIVE_NAME), None)
    if entry is None:
        raise ValidationFailed(f"backup {manifest.backup_id}: manifest has no {ARCHIVE_NAME} entry")
    path = Path(folder) / ARCHIVE_NAME
    store.get_file(entry.stored_key, str(path))
    return path


def check_backup(store: BackupStore, manifest: BackupManifest) -> tuple[list[str], list[str]]:
    """(integrity problems, syntax warnings) of a backup: stored object, every member, every sha256."""
    problems = stored.verify_stored(store, manifest, sample_percent=0).problems
    if problems:
        return problems, []
    entry = manifest.entries[0]
    where = store.where(entry.stored_key)
    warnings: list[str] = []
    with scratch.directory("backstop-configs-check-") as tmp:
        archive = _download_archive(store, manifest, tmp)
        data = archive.read_bytes()
        if entry.sha256 and hashlib.sha256(data).hexdigest() != entry.sha256:
            return [f"{where}: archive sha256 differs from the manifest"], []
        found: dict[str, str] = {}
        try:
            for path, content in iter_archive(archive, where):
                found[path] = hashlib.sha256(content).hexdigest()
                problem = syntax_problem(path, content)
                if problem:
                    warnings.append(problem)
        except ValidationFailed as exc:
            return [str(exc)], []
    expected = manifest_files(manifest)
    if not expected:
        problems.append(f"backup {manifest.backup_id}: manifest lists no files")
    return problems + compare_files(expected, found, where), warnings


def select_files(records: list[FileRecord], only: list[str] | None) -> list[FileRecord]:
    """Files whose path equals or matches one of `only` (all when None); NotFound for a pattern
    that matches nothing."""
    if not only:
        return records
    missing = [p for p in only if not any(r.path == p or matches(r.path, [p]) for r in records)]
    if missing:
        raise NotFound(f"no file in the backup matches {', '.join(map(repr, missing))}")
    return [r for r in records if any(r.path == p or matches(r.path, [p]) for p in only)]


def staged_contents(
    store: BackupStore, manifest: BackupManifest, records: list[FileRecord]
) -> dict[str, bytes]:
    """The bytes of `records` from the backup's archive, each checked against its sha256."""
    with scratch.directory("backstop-configs-stage-") as tmp:
        archive = _download_archive(store, manifest, tmp)
        staged = Path(tmp) / "staged"
        staged.mkdir()
        extract_archive(archive, staged, store.where(manifest.entries[0].stored_key))
        contents = {}
        for record in records:
            data = (staged / check_member_name(record.path)).read_bytes()
            if hashlib.sha256(data).hexdigest() != record.sha256:
                raise ValidationFailed(
                    f"backup {manifest.backup_id}: {record.path} in the archive differs from the manifest"
                )
            contents[record.path] = data
    return contents


def verify_restored_files(
    manifest: BackupManifest, location: Location, only: list[str] | None = None
) -> list[str]:
    """Differences between the manifest's files (those matching `only`) and what `location` holds."""
    problems = []
    for record in select_files(manifest_files(manifest), only):
        current = location.read(record.path)
        if current is None:
            problems.append(f"{location.describe()}: {record.path} missing")
        elif hashlib.sha256(current).hexdigest() != record.sha256:
            problems.append(f"{location.describe()}: {record.path} content differs from the backup")
        else:
            mode = location.mode(record.path)
            if mode is not None and mode != record.mode:
                problems.append(
                    f"{location.describe()}: {record.path} mode {mode:o}, backup has {record.mode:o}"
                )
    return problems


def added_files(
    settings: BackstopSettings, manifest: BackupManifest, location: Location, only: list[str] | None
) -> list[str]:
    """Files at `location` that the backup would have taken but does not hold (added after it):
    selected by the source's include / exclude patterns (and `only`), not left out as a secret or
    as something other than a file when the backup was taken, and not secret-looking now."""
    state = manifest.source_state
    try:
        defined = find_source(settings, manifest.source)
    except NotFound:
        defined = ConfigSource(name=manifest.source, path=str(state.get("path") or "."))
    include = state.get("include", defined.include)
    exclude = state.get("exclude", defined.exclude)
    allowed = state.get("include_secrets", defined.include_secrets)
    held = {r.path for r in manifest_files(manifest)}
    held |= {s["path"] for s in state.get("skipped_secrets", [])} | set(state.get("skipped_other", []))
    added = []
    for path in location.files():
        if path in held or not is_selected(path, include, exclude):
            continue
        if only and not any(path == p or matches(path, [p]) for p in only):
            continue
        data = location.read(path) or b""
        whole = data if needs_whole_file(path, len(data)) else None
        if secret_reason(path, data[:HEAD_BYTES], whole) and not matches(path, allowed):
            continue  # a secret is never backed up, so never "added after": left alone
        added.append(path)
    return added


class ConfigsComponent(LifecycleMethods):
    """Configuration files: source = a configured source name; one unit = the archive."""

    name = NAME
    noun, part = NOUN, PART
    Options = ConfigsOptions

    def sources(self, settings: BackstopSettings) -> list[str]:
        return [s.name for s in configs_settings(settings).sources]

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        return check_source_name(source)

    def check_target(self, settings: BackstopSettings, target: str) -> str:
        if not target.strip():
            raise InvalidInput("restore target is empty: give a directory or gs://bucket/prefix")
        return target

    def source_definition(self, ctx: Context, name: str) -> ConfigSource:
        options = ctx.options
        if options.config_source is not None:
            return absolute(options.config_source)
        if options.path:
            return absolute(ConfigSource(name=name, path=options.path))
        return absolute(find_source(ctx.settings, name))

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> LifecyclePlan:
        source = self.source_definition(ctx, manifest.source)
        return LifecyclePlan(units=[source], describe=f"configs/{source.name}: archiving {source.path}")

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: ConfigSource
    ) -> tuple[list[ManifestEntry], dict[str, Any]]:
        entry, state = archive_source(ctx.store, manifest, unit)
        for skipped in state["skipped_secrets"]:
            log.warning("configs/%s: left out %s (%s)", unit.name, skipped["path"], skipped["reason"])
        return [entry], state

    def notes(self, manifest: BackupManifest) -> list[str]:
        """Files left out as secrets and syntax warnings, by path (never content)."""
        state = manifest.source_state
        lines = [f"## {manifest.source} ({manifest.backup_id})"]
        lines += [f"- left out `{s['path']}`: {s['reason']}" for s in state.get("skipped_secrets", [])]
        lines += [f"- syntax warning: `{w}`" for w in state.get("syntax_warnings", [])]
        return lines if len(lines) > 1 else []

    def check(
        self, ctx: Context, manifest: BackupManifest, sample_percent: float, damaged: set[str]
    ) -> list[str]:
        # the archive is one object: it is always read back whole, whatever the sample percentage
        if damaged:
            return []
        problems, warnings = check_backup(ctx.store, manifest)
        for warning in warnings:
            log.warning("configs/%s %s: %s", manifest.source, manifest.backup_id, warning)
        return problems + (warnings if configs_settings(ctx.settings).strict_syntax else [])

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        original = str(manifest.source_state.get("path") or "")
        where = request.target or original
        if not where:
            raise InvalidInput(f"backup {manifest.backup_id} records no source path: give a target")
        records = select_files(manifest_files(manifest), request.only)
        location = open_location(where, ctx.store.client)
        contents = staged_contents(ctx.store, manifest, records)
        actions = location.plan(records, contents)
        if request.exact:
            actions += [
                {"name": path, "change": "delete", "why": "not in the backup"}
                for path in added_files(ctx.settings, manifest, location, request.only)
            ]
        return RestorePlan(
            target=location.describe(),
            into_original=location.describe() == open_location(original, ctx.store.client).describe()
            if original
            else False,
            actions=actions,
            private=(location, records, contents),
        )

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        location, records, contents = plan.private
        location.write_planned(records, contents, plan.actions, request.overwrite)
        if request.overwrite:
            for action in (a for a in plan.actions if a["change"] == "delete"):
                location.delete(action["name"])

    def verify_restored(
        self, ctx: Context, manifest: BackupManifest, target: str, only: list[str] | None
    ) -> list[str]:
        return verify_restored_files(manifest, open_location(target, ctx.store.client), only)

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{manifest.source}-{suffix}-")

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        path = Path(target)
        if not path.name.startswith(SCRATCH_PREFIX) or target.startswith("gs://"):
            raise InvalidInput(f"refusing to remove {target}: not a scratch target made by scratch_target()")
        shutil.rmtree(path, ignore_errors=True)


COMPONENT = ConfigsComponent()
