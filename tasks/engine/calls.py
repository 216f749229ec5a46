"""One component driven through the engine, for scripts, benchmarks and tests:
`ComponentCalls("gcs").backup(settings, store, "bucket")` is `lifecycle.backup("gcs", ...)`, and
every other attribute is the registered component's own. Nothing here adds behaviour: each method
is the engine's function run for this component."""

from __future__ import annotations

from typing import Any

from backstop.core.manifest import BackupManifest
from blocks.settings import BackstopSettings
from tasks.engine import lifecycle, restore
from tasks.engine.protocol import Context, RestoreReport, RestoreRequest, get_component, options_for
from tasks.storage.bucket import BackupStore


class ComponentCalls:
    """The lifecycle's backup / validate / restore / check_restored for component `name`."""

    def __init__(self, name: str) -> None:
        self.component = get_component(name)
        self.name = self.component.name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.component, attr)

    def check_restored(
        self,
        settings: BackstopSettings,
        store: BackupStore,
        manifest: BackupManifest,
        target: str,
        **options: Any,
    ) -> list[str]:
        """Differences between `target` and the whole backup (verify_restored with these options)."""
        ctx = Context(settings, store, options_for(self.component, options))
        return self.component.verify_restored(ctx, manifest, target, None)

    def backup(
        self, settings: BackstopSettings, store: BackupStore | None, source: str, **options: Any
    ) -> BackupManifest:
        """Back up `source` (not validated unless validate_after=True)."""
        validate_after = bool(options.pop("validate_after", False))
        log, progress = options.pop("log", None), options.pop("progress", None)
        return lifecycle.backup(
            self.name, settings, source, options, validate_after, store=store, log=log, progress=progress
        )

    def validate(
        self,
        settings: BackstopSettings,
        store: BackupStore | None,
        manifest: BackupManifest,
        sample_percent: float | None = None,
        **options: Any,
    ) -> BackupManifest:
        """Validate backup `manifest` (options override those it was taken with)."""
        return lifecycle.validate(self.name, settings, manifest, sample_percent, store, options or None)

    def restore(
        self,
        settings: BackstopSettings,
        store: BackupStore | None,
        manifest: BackupManifest,
        target: str | None = None,
        only: list[str] | None = None,
        overwrite: bool = False,
        dry_run: bool = False,
        yes: bool = False,
        skip_damaged: bool = False,
        exact: bool = False,
        **options: Any,
    ) -> RestoreReport:
        """Restore backup `manifest` of its source (approval for the original location: `yes`)."""
        request = RestoreRequest(
            source=manifest.source,
            target=target,
            backup_id=manifest.backup_id,
            only=only,
            overwrite=overwrite,
            dry_run=dry_run,
            skip_damaged=skip_damaged,
            options=options,
            exact=exact,
        )
        return restore.restore(self.name, settings, request, yes=yes, store=store)
