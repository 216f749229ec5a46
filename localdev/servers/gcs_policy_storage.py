"""Holds and retention on the storage of localdev/servers/gcs_policy_server.py: `PolicyStorage` refuses
the deletes and replacements Cloud Storage refuses (an object under a temporary or event-based hold,
younger than its bucket's retention period or under its own retention), with the real API's message,
and stamps `retentionExpirationTime` on objects.

`CALL` is the request being served (one at a time, under the server's lock): the emulator's handlers
call the storage without it, and through it the storage checks the caller's permissions
(localdev/servers/gcs_iam.py) and learns the retention an insert asks for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from localdev.servers import gcs_object_retention as object_retention
from localdev.servers.gcs_disk import DiskStorage
from localdev.servers.gcs_iam import RoleBook, require_permissions

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Forbidden(Exception):
    """The request is refused by a hold, a retention policy or a locked policy (HTTP 403)."""


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def retention_seconds(bucket: dict[str, Any]) -> int:
    return int((bucket.get("retentionPolicy") or {}).get("retentionPeriod") or 0)


def stamp_retention(bucket: dict[str, Any], obj: dict[str, Any]) -> None:
    """Set (or clear) the object's retentionExpirationTime: the later of the bucket policy's end and
    the object's own retention."""
    seconds = retention_seconds(bucket)
    ends = [object_retention.until(obj)]
    if seconds and obj.get("timeCreated"):
        ends.append(parse_time(obj["timeCreated"]) + timedelta(seconds=seconds))
    found = [end for end in ends if end is not None]
    if found:
        obj["retentionExpirationTime"] = max(found).strftime(TIME_FORMAT)
    else:
        obj.pop("retentionExpirationTime", None)


class _Call:
    """The request being served (one at a time: the server's lock), to check its caller's permissions."""

    request: Any = None
    storage: Any = None
    roles: RoleBook | None = None
    retention: Any = None  # the `retention` an insert's metadata asks for


CALL = _Call()


def require(permissions: set[str], bucket: str, obj: str | None = None) -> None:
    """Refuse the request being served unless its caller holds `permissions` on `bucket` (on its
    object `obj`)."""
    if CALL.request is not None:
        require_permissions(CALL.request, CALL.storage, bucket, CALL.roles, permissions, obj)


def _protection(bucket: dict[str, Any], obj: dict[str, Any]) -> str | None:
    """Why the real API refuses to delete or replace `obj` now (its wording), or None."""
    name = obj.get("name")
    if obj.get("temporaryHold"):
        return (
            f"Object '{name}' is under active Temporary hold and cannot be deleted, overwritten or "
            "archived until hold is removed."
        )
    if obj.get("eventBasedHold"):
        return (
            f"Object '{name}' is under active Event-Based hold and cannot be deleted, overwritten or "
            "archived until hold is removed."
        )
    until = obj.get("retentionExpirationTime")
    if until and parse_time(until) > now():
        return (
            f"Object '{name}' is subject to bucket's retention policy or object retention and cannot be "
            f"deleted or overwritten until {until}"
        )
    return None


class PolicyStorage(DiskStorage):
    """gcp-storage-emulator's storage (in memory, or on disk under `data_dir`: localdev/servers/gcs_disk.py),
    refusing deletes and replacements that GCS refuses."""

    def _existing(self, bucket_name: str, file_name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = (self.objects.get(bucket_name) or {}).get(file_name)
        return found

    def create_file(
        self, bucket_name: str, file_name: str, content: bytes, file_obj: dict[str, Any], file_id: Any = None
    ) -> None:
        existing = self._existing(bucket_name, file_name)
        require({"storage.objects.create"}, bucket_name, file_name)
        if existing is not None:
            reason = _protection(self.buckets[bucket_name], existing)
            if reason:
                raise Forbidden(reason)
            # replacing an object deletes the old one
            require({"storage.objects.delete"}, bucket_name, file_name)
        bucket = self.buckets.get(bucket_name)
        if bucket is not None:
            wanted = file_obj.get("retention") or CALL.retention
            file_obj.pop("retention", None)
            retention = object_retention.for_insert(bucket, wanted)
            if retention is not None:
                require({object_retention.SET_RETENTION}, bucket_name)
                file_obj["retention"] = retention
            file_obj["metageneration"] = "1"  # a new object (the emulator's copy made it 2)
            file_obj.setdefault("temporaryHold", False)
            file_obj.setdefault("eventBasedHold", bool(bucket.get("defaultEventBasedHold")))
            stamp_retention(bucket, file_obj)
        super().create_file(bucket_name, file_name, content, file_obj, file_id)

    def create_resumable_upload(self, bucket_name: str, file_name: str, file_obj: dict[str, Any]) -> Any:
        require({"storage.objects.create"}, bucket_name, file_name)
        if CALL.retention:  # the object is created when the upload completes, with this retention
            file_obj["retention"] = CALL.retention
        return super().create_resumable_upload(bucket_name, file_name, file_obj)

    def delete_file(self, bucket_name: str, file_name: str) -> None:
        existing = self._existing(bucket_name, file_name)
        if existing is not None and bucket_name in self.buckets:
            reason = _protection(self.buckets[bucket_name], existing)
            if reason:
                raise Forbidden(reason)
        super().delete_file(bucket_name, file_name)
