"""Disk persistence for localdev/servers/gcs_policy_server.py: gcp-storage-emulator's storage that keeps
its metadata file up to date without rewriting it on every change, the lock every server of this
process serves under, and the media links of objects found on disk again.

The emulator rewrites its whole metadata file (every object's metadata as one JSON) on each change,
which makes a bucket of thousands of objects slow to fill; here a change only marks it dirty, and
`flush` (every `FLUSH_SECONDS` on disk, at shutdown, never in memory) writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from gcp_storage_emulator.settings import STORAGE_DIR
from gcp_storage_emulator.storage import Storage

# One lock for every server of this process: the emulator's storage and its route table are
# process-wide (each server routes with its own table under it), and a flush writes under it too.
LOCK = threading.Lock()
FLUSH_SECONDS = 1.0


class DiskStorage(Storage):  # type: ignore[misc]
    """gcp-storage-emulator's storage (in memory, or on disk under `data_dir`) that writes its
    metadata file when flushed, not on every change."""

    dirty = False

    def _object_path(self, bucket_name: str, file_name: str) -> str:
        """Where an object's bytes are kept: a file per name digest, since object names are not paths
        (`events/` and `events/x`, or `a` and `a/`, are distinct objects)."""
        return f"{bucket_name}/{hashlib.sha256(file_name.encode()).hexdigest()}"

    def _write_config_to_file(self) -> None:
        self.dirty = True

    def flush(self) -> None:
        """Write the metadata file if anything changed (on disk only; call under `LOCK`)."""
        if not self.dirty or self._use_memory_fs:
            self.dirty = False
            return
        data = {
            "buckets": self.buckets,
            "objects": self.objects,
            "resumable": self.resumable,
            "bucket_iam_policies": self.bucket_iam_policies,
            "soft_deleted": self.soft_deleted,
        }
        path = Path(self._data_dir) / STORAGE_DIR / ".meta"
        partial_path = path.with_name(".meta.partial")
        partial_path.write_text(json.dumps(data))
        os.replace(partial_path, path)  # a crash leaves the previous file whole
        self.dirty = False


def flush(storage: DiskStorage) -> None:
    with LOCK:
        storage.flush()


def flush_every(storage: DiskStorage, stop: threading.Event) -> None:
    while not stop.wait(FLUSH_SECONDS):
        flush(storage)


def relink(storage: DiskStorage, base_url: str) -> None:
    """Point the media links of objects found on disk at this server (an earlier one wrote its own
    address into them)."""
    for objects in storage.objects.values():
        for obj in objects.values():
            link = obj.get("mediaLink")
            if isinstance(link, str) and "/download/" in link:
                obj["mediaLink"] = base_url + link[link.index("/download/") :]
