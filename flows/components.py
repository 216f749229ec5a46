"""The three flows of a component, made from the registry: backup-<name>, validate-<name>, restore-<name>.

Each is one call of flows/lifecycle.py, with a typed parameter form in the Prefect UI (the
component's options model included). flows/<name>.py names them for prefect.yaml's entrypoints:
`backup_gcs, validate_gcs, restore_gcs = component_flows("gcs")`.

This module keeps its annotations evaluated (no `from __future__ import annotations`): Prefect
builds each form from the function's signature, and `Options` is the component's own model.
"""

from typing import Any

from prefect import flow

from blocks.settings import DEFAULT_BLOCK_NAME
from flows import lifecycle
from flows.hooks import HOOKS
from tasks.engine.protocol import get_component


def _dump(options: Any) -> dict[str, Any] | None:
    return options.model_dump(exclude_unset=True) if options is not None else None


def component_flows(name: str) -> tuple[Any, Any, Any]:
    """(backup, validate, restore) flows of the registered component `name`."""
    component = get_component(name)
    Options = component.Options  # noqa: N806 (a type, named as one)
    noun, part = component.noun, component.part

    def backup(
        sources: list[str] | None = None,
        options: Options | None = None,  # type: ignore[valid-type]
        validate_after: bool = True,
        sample_percent: float | None = None,
        settings_block: str = DEFAULT_BLOCK_NAME,
    ) -> list[dict[str, Any]]:
        return lifecycle.backup_sources(
            name, sources, _dump(options), validate_after, sample_percent, settings_block
        )

    def validate(
        backup_id: str | None = None,
        source: str | None = None,
        sample_percent: float | None = None,
        settings_block: str = DEFAULT_BLOCK_NAME,
    ) -> list[dict[str, Any]]:
        return lifecycle.validate_backups(name, backup_id, source, sample_percent, settings_block)

    def restore(
        source: str,
        target: str | None = None,
        backup_id: str | None = None,
        before: str | None = None,
        only: list[str] | None = None,
        overwrite: bool = False,
        dry_run: bool = False,
        skip_damaged: bool = False,
        options: Options | None = None,  # type: ignore[valid-type]
        settings_block: str = DEFAULT_BLOCK_NAME,
        exact: bool = False,
    ) -> dict[str, Any]:
        return lifecycle.restore_backup(
            name, source, target, backup_id, before, only, overwrite, dry_run, skip_damaged, _dump(options),
            settings_block, exact=exact,
        )  # fmt: skip

    backup.__doc__ = f"""Back up {name} {noun}s (default: those the settings schedule), then validate each.

    Args:
        sources: {noun}s to back up.
        options: options of the {name} component.
        validate_after: validate each backup after it is committed (a failure fails the run).
        sample_percent: share of stored objects validation re-reads (default from the settings).
        settings_block: name of the Backstop settings block.
    """
    validate.__doc__ = f"""Validate one backup (by id), or the latest of `source` / of every scheduled {noun}.

    Args:
        backup_id: the backup to validate.
        source: the {noun} whose latest backup to validate.
        sample_percent: share of stored objects re-read (default from the settings).
        settings_block: name of the Backstop settings block.
    """
    restore.__doc__ = f"""Restore a {name} backup (whole, or {part}s) into the original {noun} or `target`.

    Args:
        source: the backed-up {noun}.
        target: where to restore (default: the original {noun}).
        backup_id: the backup to restore (default: the latest validated one, before `before`).
        before: ISO time; take the latest validated backup started at or before it.
        only: restore only these {part}s.
        overwrite: replace or delete existing data that differs (never without it).
        dry_run: only report what would change.
        skip_damaged: restore what is intact of a damaged backup (the rest is named).
        options: options of the {name} component.
        settings_block: name of the Backstop settings block.
        exact: also delete what the target holds in the restored scope that the backup does not
            (added after the backup), with `overwrite`: the target as it was at the backup.
    Changing the original {noun} pauses for approval in the UI (default deny).
    """
    made = []
    for verb, fn in (("backup", backup), ("validate", validate), ("restore", restore)):
        fn.__name__ = fn.__qualname__ = f"{verb}_{name}"
        made.append(flow(name=f"{verb}-{name}", **HOOKS)(fn))
    return made[0], made[1], made[2]
