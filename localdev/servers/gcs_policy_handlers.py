"""The bucket and object handlers of localdev/servers/gcs_policy_server.py that keep what the
emulator drops: a new bucket's configuration (location, retention policy, object retention,
default event-based hold), retention policy changes and locking (`lockRetentionPolicy`), object
holds and object retention on insert, copy, rewrite and patch, refusing what the real JSON API refuses."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import server as emu
from gcp_storage_emulator.handlers import buckets as emu_buckets

from localdev.servers import gcs_object_retention as object_retention
from localdev.servers.gcs_policy_storage import (
    CALL,
    TIME_FORMAT,
    Forbidden,
    now,
    require,
    retention_seconds,
    stamp_retention,
)


class PreconditionFailed(Exception):
    """An ifMetagenerationMatch precondition did not hold (HTTP 412)."""


class BadRequest(Exception):
    """The request is malformed for this resource (HTTP 400)."""


def _location_type(location: str) -> str:
    if location in {"US", "EU", "ASIA"}:
        return "multi-region"
    return "region" if "-" in location else "dual-region"


def bucket_insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    """buckets.insert that keeps the configuration sent with the new bucket."""
    body = dict(request.data or {})
    emu_buckets.insert(request, response, storage)
    bucket = storage.buckets.get(body.get("name"))
    if response.status != HTTPStatus.OK or bucket is None:
        return
    if str((request.query.get("enableObjectRetention") or ["false"])[0]).lower() == "true":
        body["objectRetention"] = {"mode": "Enabled"}
    _apply_bucket_patch(storage, bucket, body)
    response.json(bucket)


def _apply_bucket_patch(storage: Any, bucket: dict[str, Any], body: dict[str, Any]) -> None:
    body = dict(body)
    body.pop("name", None)
    versioned = bool((body.get("versioning") or bucket.get("versioning") or {}).get("enabled"))
    retained = (
        int((body.get("retentionPolicy") or {}).get("retentionPeriod") or 0)
        if "retentionPolicy" in body
        else retention_seconds(bucket)
    )
    if versioned and retained:  # Cloud Storage refuses a bucket with both
        raise BadRequest("A bucket cannot have both a retention policy and object versioning enabled.")
    if "retentionPolicy" in body:
        wanted = body.pop("retentionPolicy")
        current = bucket.get("retentionPolicy") or {}
        period = int((wanted or {}).get("retentionPeriod") or 0)
        if current.get("isLocked"):
            if period < int(current.get("retentionPeriod") or 0):
                raise Forbidden(
                    f"Cannot reduce retention duration or remove a locked retention policy of bucket "
                    f"'{bucket['name']}'."
                )
            current["retentionPeriod"] = str(period)
        elif period:
            bucket["retentionPolicy"] = {
                "retentionPeriod": str(period),
                "effectiveTime": now().strftime(TIME_FORMAT),
                "isLocked": False,
            }
        else:
            bucket.pop("retentionPolicy", None)
        for obj in (storage.objects.get(bucket["name"]) or {}).values():
            stamp_retention(bucket, obj)
    if "location" in body and body["location"]:
        body["location"] = str(body["location"]).upper()
        bucket["locationType"] = _location_type(body["location"])
    if "objectRetention" in body:  # enabled once, never turned off
        wanted = (body.pop("objectRetention") or {}).get("mode")
        if wanted != "Enabled" and object_retention.enabled(bucket):
            raise BadRequest(f"Object retention cannot be disabled on bucket '{bucket['name']}'.")
        if wanted == "Enabled":
            bucket["objectRetention"] = {"mode": "Enabled"}
    if "defaultEventBasedHold" in body:
        bucket["defaultEventBasedHold"] = bool(body.pop("defaultEventBasedHold"))
    emu_buckets._patch_bucket(bucket, body)
    storage.create_bucket(bucket["name"], bucket)


def _bucket_or_404(request: Any, response: Any, storage: Any) -> dict[str, Any] | None:
    """The bucket the request names, or None with the response set to 404."""
    bucket: dict[str, Any] | None = storage.buckets.get(request.params.get("bucket_name"))
    if bucket is None:
        response.status = HTTPStatus.NOT_FOUND
    return bucket


def bucket_patch(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    bucket = _bucket_or_404(request, response, storage)
    if bucket is None:
        return
    _apply_bucket_patch(storage, bucket, dict(request.data or {}))
    response.json(bucket)


def lock_retention_policy(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    """buckets.lockRetentionPolicy: irreversible; needs ifMetagenerationMatch, like the real API."""
    bucket = _bucket_or_404(request, response, storage)
    if bucket is None:
        return
    wanted = (request.query.get("ifMetagenerationMatch") or [None])[0]
    if wanted is None:
        raise BadRequest("Required parameter: ifMetagenerationMatch")
    if str(wanted) != str(bucket.get("metageneration")):
        raise PreconditionFailed("Precondition Failed (ifMetagenerationMatch)")
    policy = bucket.get("retentionPolicy")
    if not policy:
        raise BadRequest(f"Bucket '{bucket['name']}' has no retention policy to lock.")
    policy["isLocked"] = True
    bucket["metageneration"] = str(int(bucket.get("metageneration", "1")) + 1)
    storage.create_bucket(bucket["name"], bucket)
    response.json(bucket)


def object_insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
    """objects.insert that keeps the `retention` of the object's metadata (multipart or resumable)."""
    kind = (request.query.get("uploadType") or [""])[0]
    data = request.data if kind in {"multipart", "resumable"} else None
    meta = (data or {}).get("meta") if kind == "multipart" else data
    CALL.retention = (meta or {}).get("retention") if isinstance(meta, dict) else None
    return emu.objects.insert(request, response, storage, *args, **kwargs)


def object_copy(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
    """objects.copy / objects.rewrite that keep the `retention` of the destination's metadata (the
    request body), as objects.insert does: the copy is created retained."""
    body = request.data if isinstance(request.data, dict) else {}
    CALL.retention = body.get("retention")
    handler = emu.objects.rewrite if "/rewriteTo/" in request.path else emu.objects.copy
    return handler(request, response, storage, *args, **kwargs)


def object_patch(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    """objects.patch that also sets and releases holds and sets object retention: retention needs
    storage.objects.setRetention (and overrideUnlockedRetention to weaken an Unlocked one), every
    other field storage.objects.update."""
    bucket_name, name = request.params["bucket_name"], request.params["object_id"]
    obj = (storage.objects.get(bucket_name) or {}).get(name)
    if obj is None:
        response.status = HTTPStatus.NOT_FOUND
        return
    body = dict(request.data or {})
    if "retention" in body:
        override = str((request.query.get("overrideUnlockedRetention") or ["false"])[0]).lower() == "true"
        wanted = {object_retention.SET_RETENTION} | ({object_retention.OVERRIDE} if override else set())
        require(wanted, bucket_name)
        bucket = storage.buckets[bucket_name]
        if not object_retention.enabled(bucket):
            raise BadRequest(f"Object retention is not enabled on bucket '{bucket_name}'.")
        retention = object_retention.check_change(name, obj.get("retention"), body.pop("retention"), override)
        obj.pop("retention", None)
        if retention is not None:
            obj["retention"] = retention
        stamp_retention(bucket, obj)
    if any(value is not None for value in body.values()):
        require({"storage.objects.update"}, bucket_name)
    changed = "retention" in (request.data or {})
    for field in ("temporaryHold", "eventBasedHold"):
        if field in body and body[field] is not None:
            obj[field] = bool(body.pop(field))
            changed = True
    if body:
        emu.objects._patch_object(obj, body)  # metageneration and the other writable fields
    elif changed:  # a metadata change: a new metageneration, as on Cloud Storage
        obj["metageneration"] = str(int(obj.get("metageneration") or 1) + 1)
    storage.patch_object(bucket_name, name, obj)
    response.json(obj)
