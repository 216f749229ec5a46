"""The backup bucket: `BackupStore`, and `open_store` that opens one from the settings.

Everything that reads or writes the backup bucket goes through `BackupStore`, which converts
`google.api_core` errors into Backstop errors at the call site (tasks/storage/google_api.py). It is
made of layers, each in its module: objects (write, read, list, delete, holds:
tasks/storage/objects.py), manifests and their chunks (written once, later changes as update
records: tasks/storage/manifests.py), and here the in-progress markers, pickling (a store travels
to a Dask worker as what it points at) and opening a store from the settings.
"""

from __future__ import annotations

import builtins
import json
from datetime import UTC, datetime
from typing import Any

from backstop.core.errors import BackstopError, ConfigError
from backstop.core.manifest import MANIFEST_NAME, BackupManifest, backup_time
from backstop.core.retention_lock import RetentionLock
from blocks.clients import storage_client
from blocks.settings import BackstopSettings
from tasks.storage.manifests import ManifestStore

INPROGRESS_PREFIX = "_inprogress/"
BEAT = "+"  # a heartbeat of a running backup: `<backup_id>+<time>.json` beside its `<backup_id>.json`
RESUME_PREFIX = "_resume/"  # work files and checkpoints of runs (tasks/components/gcs/resume.py)


class BackupStore(ManifestStore):
    """One backup bucket (primary or secondary)."""

    def __repr__(self) -> str:
        return f"BackupStore(gs://{self.bucket_name})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled (for a unit on a Dask worker) as what it points at: a client holds sockets and
        credentials that do not travel, so the other side opens its own (`reopen_store`), the
        job's kind of client (a store on an impersonating or custom-endpoint client does not travel)."""
        from blocks.clients import credentials_block_in_use

        where = (self.client.project, self.bucket_name, self.kms_key_name, self.hold_validated)
        known = self.retention_enabled  # the bucket's retention, once asked: not asked again per unit
        return reopen_store, (*where, self.chunk_entries, credentials_block_in_use(), self.lock, known)

    # -- in-progress markers (prune does not sweep data a running backup may reuse) ------
    def mark_in_progress(self, manifest: BackupManifest, beat: datetime | None = None) -> str:
        """Mark the run in progress; with `beat`, a later sign that it still runs (a new object each
        time: the backup writer may not replace one)."""
        name = manifest.backup_id + ("" if beat is None else f"{BEAT}{beat.astimezone(UTC):%Y%m%dT%H%M%SZ}")
        key = f"{INPROGRESS_PREFIX}{manifest.component}/{manifest.source}/{name}.json"
        body = {"backup_id": manifest.backup_id, "started_at": manifest.started_at.isoformat()}
        self.put_bytes(key, json.dumps(body).encode(), content_type="application/json")
        return key

    def clear_in_progress(self, manifest: BackupManifest) -> None:
        """Remove the run's marker and its heartbeats (best effort: a writer that may not delete,
        or the bucket's retention policy, leaves them for prune)."""
        prefix = f"{INPROGRESS_PREFIX}{manifest.component}/{manifest.source}/{manifest.backup_id}"
        self.delete([k for k in self.list(prefix) if run_of(k.rsplit("/", 1)[-1]) == manifest.backup_id])

    def in_progress(
        self,
        component: str,
        source: str | None = None,
        younger_than_hours: float = 24.0,
        other_than: str | None = None,
    ) -> builtins.list[str]:
        """Backup ids of runs of this source (None: of any source of `component`) whose marker or
        latest heartbeat is recent (a backup beats every hour while it runs, so one that runs for
        days stays in progress) and that have not committed; `other_than`: a run left out (the
        caller's own, which is running: its manifest is not looked for).

        A marker whose backup has a manifest is not a running backup: its delete was refused (a
        bucket retention policy keeps the marker as long as any other object, and the backup writer
        may not delete at all); prune removes such markers (tasks/operations/prune.py).
        """
        now = datetime.now(UTC)
        latest: dict[tuple[str, str], datetime] = {}
        folder = f"{INPROGRESS_PREFIX}{component}/"
        for key, blob in self.list(folder + (f"{source}/" if source else "")).items():
            of_source, name = key[len(folder) :].rsplit("/", 1)
            run, at = (of_source, run_of(name)), blob.time_created or now
            latest[run] = max(latest.get(run, at), at)
        return [
            backup_id
            for (of_source, backup_id), at in latest.items()
            if backup_id != other_than
            and (now - at).total_seconds() < younger_than_hours * 3600
            and not self._committed(component, of_source, backup_id)
        ]

    def _committed(self, component: str, source: str, backup_id: str) -> bool:
        try:
            day = backup_time(backup_id)
        except BackstopError:
            return False
        return self.stat(f"{component}/{source}/{day:%Y/%m/%d}/{backup_id}/{MANIFEST_NAME}") is not None


def run_of(name: str) -> str:
    """The backup id of a run file's name under `_inprogress/` or `_resume/` (a marker, a heartbeat,
    a folder of checkpoints)."""
    return name.removesuffix(".json").split(BEAT, 1)[0]


def reopen_store(
    project: str,
    bucket_name: str,
    kms_key_name: str | None,
    hold_validated: bool,
    chunk_entries: int,
    credentials_block: str | None,
    lock: RetentionLock | None = None,
    retention_enabled: bool | None = None,
) -> BackupStore:
    """A pickled BackupStore on the other side: a new client for the same project, bucket and key,
    built as the pickling process builds its clients (emulator variables, the same credentials block,
    else Application Default Credentials)."""
    from blocks.clients import adopt_credentials_block, storage_client

    adopt_credentials_block(credentials_block)
    store = BackupStore(storage_client(project), bucket_name, kms_key_name, hold_validated, lock)
    store.chunk_entries = chunk_entries
    store.retention_enabled = retention_enabled
    return store


def open_store(settings: BackstopSettings, secondary: bool = False, client: Any | None = None) -> BackupStore:
    """The primary (or secondary) backup store named by `settings`, in the backup project, with the
    settings' object retention; the secondary's client is built with `secondary_credentials_block`
    when the settings name one (the identity that alone writes the secondary copy)."""
    bucket = settings.secondary_bucket if secondary else settings.backup_bucket
    if not bucket:
        raise ConfigError("settings name no secondary_bucket")
    # A key lives in one location: the secondary bucket (another region) needs its own.
    key = (settings.secondary_kms_key_name or settings.kms_key_name) if secondary else settings.kms_key_name
    if client is None:
        credentials = None
        if secondary and settings.secondary_credentials_block:
            from blocks.credentials import load_credentials

            credentials = load_credentials(settings.secondary_credentials_block)
        client = storage_client(settings.buckets_project, credentials)
    return BackupStore(
        client,
        bucket,
        key,
        hold_validated=settings.hold_newest_validated,
        lock=RetentionLock.from_settings(settings),
    )
