"""The one small protocol every component implements, the shapes it trades in, and the registry.

The lifecycle (tasks/engine/lifecycle.py) owns everything that must hold for every component: begin and
commit a backup, abandon it on any error, validate after, record failures, resolve a backup and
check it belongs to the named source, read it from the primary or the secondary copy, refuse a
damaged one, refuse to replace or delete without `overwrite`, ask for approval before changing an
original location, verify what was written, drill. A component supplies only what differs:

- `plan_backup` / `run_unit` (/ `finish`, `discard`): what to take, in units the lifecycle runs as
  Prefect tasks;
- `check`: checks of its own beyond the stored objects' sizes and checksums;
- `plan_restore` / `apply_restore` / `verify_restored`: what a restore would change, doing it,
  comparing the target with the backup;
- `scratch_target` / `remove_target`: isolated targets for drills;
- `scope` (/ `within`): what an option narrows a backup to (Cloud Storage prefixes, BigQuery tables),
  so a backup of part of a source is never taken for the whole (`holds`).
Steps in parentheses, `delete`, `holds`, `scope`, `gone_outside` and `notes` have defaults in `LifecycleMethods`, the base class
of the registered components: a component overrides them only where it differs.

Adding a component: one module with a class like the ones registered below, its options model, one
line in `COMPONENTS` (tasks/engine/registry.py), one fixture in tests/contract/conftest.py, and its prefect.yaml entries.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from backstop.core.errors import InvalidInput
from backstop.core.forms import OPTIONS_CONFIG
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.restore_points import WHOLE
from blocks.settings import BackstopSettings
from tasks.engine.registry import COMPONENTS as COMPONENTS  # re-exported: the registry's list
from tasks.storage.bucket import BackupStore

# What a restore action does to the target. The lifecycle refuses "replace" and "delete" without
# `overwrite`, asks for approval before them in an original location, and always refuses "blocked".
CHANGES = ("create", "replace", "delete", "unchanged", "blocked", "skipped", "note")
DESTRUCTIVE = ("replace", "delete")


class NoOptions(BaseModel):
    """A component with no options of its own."""

    model_config = OPTIONS_CONFIG


@dataclass
class Context:
    """What every component step gets: the settings, the store the backup is read from or written
    to, and the component's options (an instance of its `Options` model).

    `just_read`: a validation that follows its backup in the same run, which has just read the
    source as of the backup's start and recorded what it read (counts, digests): a component may
    check the stored files against that record instead of reading the whole source again. A
    validation on its own (later, `backstop validate`, re-verification) leaves it False.
    """

    settings: BackstopSettings
    store: BackupStore
    options: Any = None
    log: Any = None
    just_read: bool = False

    def info(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for a unit on another process (a Dask worker): the log callback writes to this
        process's terminal, so the other side logs to its task run's logger instead."""
        state = dict(self.__dict__)
        if state.get("log") is not None:
            state["log"] = run_log
        return state


def run_log(message: str) -> None:
    """Log `message` to the current Prefect run's logger (or this module's, outside a run)."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        get_run_logger().info("%s", message)
    except MissingContextError:
        logging.getLogger(__name__).info("%s", message)


@dataclass
class BackupPlan:
    """What a backup takes: units to run (each a task), entries carried over unchanged from the
    previous backup, and source state known at planning time."""

    units: Iterable[Any]  # a list, or a generator that yields units as planning goes on
    carried: Iterable[ManifestEntry] = field(default_factory=list)  # a list, or an EntrySpool the
    # plan fills while its units are taken (the lifecycle then adds the units' entries to it)
    state: dict[str, Any] = field(default_factory=dict)
    describe: str = ""
    private: Any = None
    # Locking at commit (tasks/catalog/locks.py) skips what is already retained long enough: the
    # units' own objects when they create them retained (`locks.retention_at_write`), and the carried
    # entries when they are `carried_from`'s (retained as long as that backup is locked).
    retained_at_write: bool = False
    carried_from: BackupManifest | None = None


@dataclass(frozen=True)
class StoredEntries:
    """What a unit may return instead of its entries: the key of the entry list it wrote to the
    backup bucket, so that only a key travels back from a worker on another machine."""

    key: str
    count: int


@dataclass
class RestoreRequest:
    """A restore as the user asked for it; the same names in every component, flow and command."""

    source: str
    target: str | None = None
    backup_id: str | None = None
    before: str | None = None
    only: list[str] | None = None
    overwrite: bool = False
    dry_run: bool = False
    skip_damaged: bool = False
    options: Any = None
    # Bring the target to the backup's state in the restored scope: what it holds there that the
    # backup does not (added after the backup) is planned as "delete" (refused without overwrite).
    exact: bool = False
    # What this backup leaves to newer backups of part of the source read in the same restore (a
    # restore point's layers: backstop/core/restore_points.py): scope items (prefixes, tables) it
    # neither writes, verifies nor deletes in. Set by the restore itself, never by the user.
    exclude: list[str] | None = None


@dataclass
class RestorePlan:
    """What a restore would do: one action per restored thing, with `change` one of CHANGES.

    `into_original` says the target is where the backup came from (approval applies); `private`
    holds whatever the component needs to apply the plan.
    """

    target: str
    into_original: bool
    actions: list[dict[str, Any]] = field(default_factory=list)
    private: Any = None
    done: dict[str, int] = field(
        default_factory=dict
    )  # counts the service reported, where finer than actions

    def count(self, change: str) -> int:
        return self.done.get(change, sum(1 for a in self.actions if a["change"] == change))

    def destructive(self) -> list[dict[str, Any]]:
        return [a for a in self.actions if a["change"] in DESTRUCTIVE]

    def counts(self) -> dict[str, int]:
        return dict(Counter(a["change"] for a in self.actions)) | self.done


@dataclass
class RestoreReport:
    """What a restore did (or, with dry_run, would do)."""

    component: str
    source: str
    backup_id: str
    target: str
    dry_run: bool = False
    created: int = 0
    overwritten: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    from_secondary: bool = False
    approval: str = ""
    problems: list[str] = field(default_factory=list)
    # part -> {"backup_id", "backup_time", "entries" (in the backup), "restored"}: which backup each
    # part of the restore point came from and what of it was written
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "source": self.source,
            "backup_id": self.backup_id,
            "target": self.target,
            "dry_run": self.dry_run,
            "created": self.created,
            "overwritten": self.overwritten,
            "unchanged": self.unchanged,
            "conflicts": len(self.conflicts),
            "seconds": round(self.seconds, 3),
            "from_secondary": self.from_secondary,
            "approval": self.approval,
            "parts": self.parts,
        }


class Component(Protocol):
    """What differs between components; see the module docstring."""

    name: str
    noun: str  # what a source is called: "bucket", "dataset", ...
    part: str  # what `only` names: "object", "table", ...
    # The parts a source has, each backed up on its own schedule (Composer: dags, config, metadata);
    # () = one implicit part, the whole source. A restore point takes each part from its own backup.
    parts: tuple[str, ...]
    part_names: tuple[str, ...]  # other names `only` takes (Composer: snapshot, dags/FILE, ...)
    Options: ClassVar[type[BaseModel]]
    # False: the lifecycle hands this component manifests with every entry in memory (few entries).
    # True: large manifests come as headers and the component streams `store.iter_entries`.
    streams_entries: bool

    def sources(self, settings: BackstopSettings) -> list[str]:
        """The sources the settings schedule for backup."""
        ...

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        """The source name, checked (InvalidInput / NotFound naming it)."""
        ...

    def check_target(self, settings: BackstopSettings, target: str) -> str:
        """A restore target, checked."""
        ...

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> BackupPlan:
        """Decide what the backup of `manifest.source` takes."""
        ...

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: Any
    ) -> tuple[list[ManifestEntry] | StoredEntries, dict[str, Any]]:
        """Take one unit into the store; return its entries (or where it wrote them) and state to
        merge into source_state."""
        ...

    def finish(
        self, ctx: Context, manifest: BackupManifest, plan: BackupPlan, entries: list[ManifestEntry]
    ) -> dict[str, Any]:
        """The source state recorded in the manifest."""
        ...

    def discard(self, ctx: Context, manifest: BackupManifest, entries: list[ManifestEntry]) -> None:
        """Free what an abandoned backup made outside the store (best effort)."""
        ...

    def check(
        self, ctx: Context, manifest: BackupManifest, sample_percent: float, damaged: set[str]
    ) -> list[str]:
        """Checks of this component beyond the stored objects (`damaged` already failed those)."""
        ...

    def holds(self, manifest: BackupManifest, request: RestoreRequest) -> bool:
        """Whether a backup holds what a restore asks for (the newest that does is chosen)."""
        ...

    def scope(self, options: Any) -> list[str] | None:
        """What a backup taken with `options` was narrowed to (Cloud Storage prefixes, BigQuery
        tables); None: the whole source."""
        ...

    def gone_outside(self, ctx: Context, manifest: BackupManifest) -> list[str]:
        """What the backup holds outside the backup bucket that no longer exists (a Backup for GKE
        backup, a snapshot table), one line each; re-verification marks such a backup expired."""
        ...

    def notes(self, manifest: BackupManifest) -> list[str]:
        """Markdown lines about a backup for its artifact (what was left out, warnings)."""
        ...

    def entry_part(self, entry: ManifestEntry) -> str:
        """The part an entry belongs to (one of `parts`, or WHOLE)."""
        ...

    def part_named(self, name: str) -> str:
        """The part a name `only` gives belongs to (Composer: dags/etl.py -> dags)."""
        ...

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        """What restoring `manifest` as `request` asks would change; writes nothing.

        "replace" only where the target differs from the backup ("unchanged" where it is identical);
        with `request.exact`, one "delete" per item in the restored scope that the backup does not hold."""
        ...

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        """Do what `plan` says (the lifecycle has refused conflicts and got approval)."""
        ...

    def verify_restored(
        self,
        ctx: Context,
        manifest: BackupManifest,
        target: str,
        only: list[str] | None,
        exclude: list[str] | None = None,
    ) -> list[str]:
        """Differences between `target` and the backup (of the parts in `only`, less the scope items
        in `exclude`, which only a component with a `scope` is ever given)."""
        ...

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        """An isolated target for a restore drill."""
        ...

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        """Delete a scratch target made by a drill, and everything in it."""
        ...

    def delete(self, settings: BackstopSettings, manifest: BackupManifest) -> None:
        """Free what a pruned backup holds outside the store (nothing for most components)."""
        ...


class LifecycleMethods:
    """Base of the registered components: the protocol's optional steps with their defaults.
    A component never calls the engine (scripts and tests that want `backup` / `validate` /
    `restore` on a component object use `tasks/engine/calls.py`)."""

    name: str
    streams_entries = False
    parts: tuple[str, ...] = ()
    part_names: tuple[str, ...] = ()

    def part_named(self, name: str) -> str:
        """The part a name `only` gives (or an action's "part") belongs to: itself unless a
        component says otherwise (Composer: snapshot -> config, dags/etl.py -> dags)."""
        return name

    def finish(
        self, ctx: Context, manifest: BackupManifest, plan: BackupPlan, entries: list[ManifestEntry]
    ) -> dict[str, Any]:
        """Source state beyond what the plan and the units recorded: none by default."""
        return {}

    def discard(self, ctx: Context, manifest: BackupManifest, entries: list[ManifestEntry]) -> None:
        """An abandoned run's stored objects stay unreferenced (prune sweeps them); nothing else by default."""

    def delete(self, settings: BackstopSettings, manifest: BackupManifest) -> None:
        """Nothing outside the store by default (prune deletes the stored objects)."""

    def holds(self, manifest: BackupManifest, request: RestoreRequest) -> bool:
        """Whether `manifest` holds what `request` asks (the newest backup that does is restored): a
        backup of the whole source holds everything; a backup narrowed to a scope (`scope`) holds a
        restore of names within it (`within`), never one of the whole source."""
        scope = self.scope(stored_options(self, manifest))
        if scope is None:
            return True
        return bool(request.only) and all(any(self.within(o, s) for s in scope) for o in request.only or [])

    def scope(self, options: Any) -> list[str] | None:
        """The whole source by default: no option narrows a backup."""
        return None

    def within(self, name: str, scope: str) -> bool:
        """Whether a name `only` gives lies within one item of a backup's scope (itself by default)."""
        return name == scope

    def gone_outside(self, ctx: Context, manifest: BackupManifest) -> list[str]:
        """Nothing outside the backup bucket by default: nothing there can be gone."""
        return []

    def notes(self, manifest: BackupManifest) -> list[str]:
        """Markdown lines worth a person's attention after a backup (what was left out, warnings)."""
        return []

    def entry_part(self, entry: ManifestEntry) -> str:
        """Every entry belongs to the one implicit part by default."""
        return WHOLE


def get_component(name: str) -> Any:
    """The registered component `name`; InvalidInput lists the known ones."""
    if name not in COMPONENTS:
        raise InvalidInput(f"unknown component {name!r}: choose one of {', '.join(sorted(COMPONENTS))}")
    module, attr = COMPONENTS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def component_parts(name: str) -> tuple[str, ...]:
    """The parts of the registered component `name` (Composer: dags, config, metadata), each with
    backups and a restore point of its own; () for a component without parts or not registered."""
    return tuple(get_component(name).parts) if name in COMPONENTS else ()


def options_for(component: Any, options: Any) -> Any:
    """`options` (a dict, a model or None) as an instance of the component's Options model."""
    model: type[BaseModel] = component.Options
    if isinstance(options, model):
        return options
    try:
        return model.model_validate(options or {})
    except ValueError as exc:
        first: dict[str, Any] = getattr(exc, "errors", lambda: [{}])()[0]
        where = ".".join(map(str, first.get("loc", ()))) or "options"
        raise InvalidInput(f"{component.name} option {where}: {first.get('msg', exc)}") from None


def stored_options(component: Any, manifest: BackupManifest) -> Any:
    """The component options a backup was taken with (defaults for what it does not record)."""
    model: type[BaseModel] = component.Options
    known = {k: v for k, v in manifest.options.items() if k in model.model_fields}
    try:
        return model.model_validate(known)
    except ValueError:
        return model()
