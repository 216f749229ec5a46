"""A local Cloud Storage JSON API server that enforces holds, retention policies and bucket IAM.

No Cloud Storage emulator here keeps object holds or enforces a retention policy (fake-gcs-server
keeps no bucket configuration at all; gcp-storage-emulator stores a retention policy but deletes
through it). This module extends gcp-storage-emulator (pure Python, in memory) with what the real
JSON API does for the hardening checks, so the real `google-cloud-storage` client drives it:

- objects: `temporaryHold` and `eventBasedHold` are kept (insert, patch); deleting or replacing an
  object under a hold, or younger than the bucket's retention period, is refused with 403 and the
  real API's message; `retentionExpirationTime` is reported on every object of a bucket with a
  retention policy.
- buckets: `insert` keeps the configuration sent with it (location, retention policy, IAM
  configuration, default KMS key); a retention policy can be set, lengthened, shortened or
  removed until `lockRetentionPolicy` locks it (metageneration precondition required); a locked
  policy can only be lengthened; a retention policy and object versioning are refused together.
- bucket IAM (localdev/servers/gcs_iam.py): `iam/testPermissions` answers from the bucket's IAM policy (set with `setIamPolicy`),
  the predefined storage roles below and custom roles from a YAML file (`--roles`, the format of
  `deployments/iam/roles.yaml`), and requests are refused (403) without the permission they need.
  The caller is the principal its bearer token names (`Authorization: Bearer serviceAccount:x@y`,
  see `blocks.clients.LocalPrincipalCredentials`). A caller with no token is the emulator's owner
  and may do everything (every other test and the demo use it); its testIamPermissions answer is
  what `allUsers` holds. Replacing an existing object needs `storage.objects.delete` as well as
  create, as on Google Cloud. Not modelled: project-level IAM.
- object retention (Object Retention Lock): `localdev/servers/gcs_object_retention.py`.
- requests are served by one thread per connection, one request at a time (the emulator's storage
  is not thread-safe; serving connections in threads is what keeps a 16-thread client from timing
  out on connect).

Run: `python -m localdev.servers.gcs_policy_server --port 4445 [--roles deployments/iam/roles.yaml]
[--data-dir DIR]` (without `--data-dir`, in memory).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from http import HTTPStatus
from http import server as http_server
from pathlib import Path
from typing import Any

from gcp_storage_emulator import server as emu
from gcp_storage_emulator.handlers import buckets as emu_buckets
from gcp_storage_emulator.settings import STORAGE_DIR
from gcp_storage_emulator.storage import Storage

from localdev.servers import gcs_object_retention as object_retention
from localdev.servers.gcs_iam import (
    RoleBook,
    caller_token,
    granted_permissions,
    route_needs,
    test_iam_permissions,
)

API = "/storage/v1"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Forbidden(Exception):
    """The request is refused by a hold, a retention policy or a locked policy (HTTP 403)."""


class Denied(Exception):
    """The caller lacks a permission the request needs (HTTP 403, reason "forbidden")."""


class PreconditionFailed(Exception):
    """An ifMetagenerationMatch precondition did not hold (HTTP 412)."""


class BadRequest(Exception):
    """The request is malformed for this resource (HTTP 400)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def _retention_seconds(bucket: dict[str, Any]) -> int:
    return int((bucket.get("retentionPolicy") or {}).get("retentionPeriod") or 0)


def _stamp_retention(bucket: dict[str, Any], obj: dict[str, Any]) -> None:
    """Set (or clear) the object's retentionExpirationTime: the later of the bucket policy's end and
    the object's own retention."""
    seconds = _retention_seconds(bucket)
    ends = [object_retention.until(obj)]
    if seconds and obj.get("timeCreated"):
        ends.append(_parse_time(obj["timeCreated"]) + timedelta(seconds=seconds))
    found = [end for end in ends if end is not None]
    if found:
        obj["retentionExpirationTime"] = max(found).strftime(TIME_FORMAT)
    else:
        obj.pop("retentionExpirationTime", None)


class _Call:
    """The request being served (one at a time: `_Handler.lock`), to check its caller's permissions."""

    request: Any = None
    storage: Any = None
    roles: RoleBook | None = None
    retention: Any = None  # the `retention` an insert's metadata asks for


CALL = _Call()


def _require(permissions: set[str], bucket: str) -> None:
    """Refuse the request unless its caller holds `permissions` on `bucket` (a caller without a
    token is the emulator's owner, who may do everything)."""
    token = caller_token(CALL.request) if CALL.request is not None else ""
    if not token or CALL.roles is None or bucket not in CALL.storage.buckets:
        return
    granted = granted_permissions(CALL.request, CALL.storage, bucket, CALL.roles)
    for permission in sorted(permissions - granted):
        raise Denied(
            f"{token.split(':', 1)[-1]} does not have {permission} access to the Google Cloud Storage "
            f"bucket or object. Permission '{permission}' denied on resource."
        )


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
    if until and _parse_time(until) > _now():
        return (
            f"Object '{name}' is subject to bucket's retention policy or object retention and cannot be "
            f"deleted or overwritten until {until}"
        )
    return None


class PolicyStorage(Storage):  # type: ignore[misc]
    """gcp-storage-emulator's storage (in memory, or on disk under `data_dir`), refusing deletes and
    replacements that GCS refuses.

    The emulator rewrites its whole metadata file (every object's metadata as one JSON) on each
    change, which makes a bucket of thousands of objects slow to fill; here a change only marks it
    dirty, and `flush` (every `FLUSH_SECONDS` on disk, at shutdown, never in memory) writes it."""

    dirty = False

    def _object_path(self, bucket_name: str, file_name: str) -> str:
        """Where an object's bytes are kept: a file per name digest, since object names are not paths
        (`events/` and `events/x`, or `a` and `a/`, are distinct objects)."""
        return f"{bucket_name}/{hashlib.sha256(file_name.encode()).hexdigest()}"

    def _write_config_to_file(self) -> None:
        self.dirty = True

    def flush(self) -> None:
        """Write the metadata file if anything changed (on disk only; call under `_Handler.lock`)."""
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

    def _existing(self, bucket_name: str, file_name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = (self.objects.get(bucket_name) or {}).get(file_name)
        return found

    def create_file(
        self, bucket_name: str, file_name: str, content: bytes, file_obj: dict[str, Any], file_id: Any = None
    ) -> None:
        existing = self._existing(bucket_name, file_name)
        if existing is not None:
            reason = _protection(self.buckets[bucket_name], existing)
            if reason:
                raise Forbidden(reason)
            _require({"storage.objects.delete"}, bucket_name)  # replacing an object deletes the old one
        bucket = self.buckets.get(bucket_name)
        if bucket is not None:
            wanted = file_obj.get("retention") or CALL.retention
            file_obj.pop("retention", None)
            retention = object_retention.for_insert(bucket, wanted)
            if retention is not None:
                _require({object_retention.SET_RETENTION}, bucket_name)
                file_obj["retention"] = retention
            file_obj.setdefault("temporaryHold", False)
            file_obj.setdefault("eventBasedHold", bool(bucket.get("defaultEventBasedHold")))
            _stamp_retention(bucket, file_obj)
        super().create_file(bucket_name, file_name, content, file_obj, file_id)

    def create_resumable_upload(self, bucket_name: str, file_name: str, file_obj: dict[str, Any]) -> Any:
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


def _error(response: Any, status: HTTPStatus, reason: str, message: str) -> None:
    response.status = status
    response.json(
        {
            "error": {
                "code": int(status),
                "message": message,
                "errors": [{"domain": "global", "reason": reason, "message": message}],
            }
        }
    )


def _guarded(handler: Any, needs: dict[str, str] | None = None, roles: RoleBook | None = None) -> Any:
    """Check the caller's IAM permissions (`needs`: bucket parameter -> permission), then run the
    handler; this module's refusals become the JSON error responses of the real API."""

    def run(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        CALL.request, CALL.storage, CALL.roles, CALL.retention = request, storage, roles, None
        try:
            if needs and roles is not None and caller_token(request):
                for param, permission in needs.items():
                    bucket = request.params.get(param)
                    if bucket in storage.buckets and permission not in granted_permissions(
                        request, storage, bucket, roles
                    ):
                        _error(
                            response,
                            HTTPStatus.FORBIDDEN,
                            "forbidden",
                            f"{caller_token(request).split(':', 1)[-1]} does not have {permission} access to the Google "
                            f"Cloud Storage bucket or object. Permission '{permission}' denied on resource.",
                        )
                        return None
            return handler(request, response, storage, *args, **kwargs)
        except (Forbidden, object_retention.RetentionRefused) as exc:
            _error(response, HTTPStatus.FORBIDDEN, "retentionPolicyNotMet", str(exc))
        except Denied as exc:
            _error(response, HTTPStatus.FORBIDDEN, "forbidden", str(exc))
        except object_retention.RetentionInvalid as exc:
            _error(response, HTTPStatus.BAD_REQUEST, "invalid", str(exc))
        except PreconditionFailed as exc:
            _error(response, HTTPStatus.PRECONDITION_FAILED, "conditionNotMet", str(exc))
        except BadRequest as exc:
            _error(response, HTTPStatus.BAD_REQUEST, "invalid", str(exc))
        return None

    return run


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
        else _retention_seconds(bucket)
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
                "effectiveTime": _now().strftime(TIME_FORMAT),
                "isLocked": False,
            }
        else:
            bucket.pop("retentionPolicy", None)
        for obj in (storage.objects.get(bucket["name"]) or {}).values():
            _stamp_retention(bucket, obj)
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


def bucket_patch(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    name = request.params.get("bucket_name")
    bucket = storage.buckets.get(name)
    if bucket is None:
        response.status = HTTPStatus.NOT_FOUND
        return
    _apply_bucket_patch(storage, bucket, dict(request.data or {}))
    response.json(bucket)


def lock_retention_policy(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    """buckets.lockRetentionPolicy: irreversible; needs ifMetagenerationMatch, like the real API."""
    name = request.params.get("bucket_name")
    bucket = storage.buckets.get(name)
    if bucket is None:
        response.status = HTTPStatus.NOT_FOUND
        return
    wanted = (request.query.get("ifMetagenerationMatch") or [None])[0]
    if wanted is None:
        raise BadRequest("Required parameter: ifMetagenerationMatch")
    if str(wanted) != str(bucket.get("metageneration")):
        raise PreconditionFailed("Precondition Failed (ifMetagenerationMatch)")
    policy = bucket.get("retentionPolicy")
    if not policy:
        raise BadRequest(f"Bucket '{name}' has no retention policy to lock.")
    policy["isLocked"] = True
    bucket["metageneration"] = str(int(bucket.get("metageneration", "1")) + 1)
    storage.create_bucket(name, bucket)
    response.json(bucket)


def object_insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
    """objects.insert that keeps the `retention` of the object's metadata (multipart or resumable)."""
    kind = (request.query.get("uploadType") or [""])[0]
    data = request.data if kind in {"multipart", "resumable"} else None
    meta = (data or {}).get("meta") if kind == "multipart" else data
    CALL.retention = (meta or {}).get("retention") if isinstance(meta, dict) else None
    return emu.objects.insert(request, response, storage, *args, **kwargs)


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
        _require(wanted, bucket_name)
        bucket = storage.buckets[bucket_name]
        if not object_retention.enabled(bucket):
            raise BadRequest(f"Object retention is not enabled on bucket '{bucket_name}'.")
        retention = object_retention.check_change(name, obj.get("retention"), body.pop("retention"), override)
        obj.pop("retention", None)
        if retention is not None:
            obj["retention"] = retention
        _stamp_retention(bucket, obj)
    if any(value is not None for value in body.values()):
        _require({"storage.objects.update"}, bucket_name)
    for field in ("temporaryHold", "eventBasedHold"):
        if field in body and body[field] is not None:
            obj[field] = bool(body.pop(field))
    emu.objects._patch_object(obj, body)  # metageneration and the other writable fields
    storage.patch_object(bucket_name, name, obj)
    response.json(obj)


EMULATOR_ROUTES = emu.HANDLERS  # the emulator's own, before a server of this module routes with its own


def handlers(roles: RoleBook) -> tuple[Any, ...]:
    """The emulator's routes with this module's behaviour in front, every handler guarded."""
    bucket = r"(?P<bucket_name>[-.\w]+)"
    extra = []
    for prefix in (API, ""):
        extra += [
            (rf"^{prefix}/b$", {"GET": emu_buckets.ls, "POST": bucket_insert}),
            (rf"^{prefix}/b/{bucket}/lockRetentionPolicy$", {"POST": lock_retention_policy}),
            (
                rf"^{prefix}/b/{bucket}/iam/testPermissions$",
                {"GET": partial(test_iam_permissions, roles=roles)},
            ),
        ]
    routes = []
    for regex, methods in [*extra, *EMULATOR_ROUTES]:
        methods = dict(methods)
        if regex.endswith(r"/o/(?P<object_id>.*[^/]+)$") and "PATCH" in methods:
            methods["PATCH"] = object_patch
        if methods.get("POST") is emu.objects.insert:
            methods["POST"] = object_insert
        if regex.endswith(r"/b/(?P<bucket_name>[-.\w]+)$") and "PATCH" in methods:
            methods["PATCH"] = bucket_patch
        routes.append(
            (
                regex,
                {method: _guarded(fn, route_needs(regex, method), roles) for method, fn in methods.items()},
            )
        )
    return tuple(routes)


class _Handler(emu.RequestHandler):  # type: ignore[misc]
    lock = threading.Lock()

    def _serve(self, method: str) -> None:
        with self.lock:  # one lock for every server of this process: each routes with its own roles
            emu.HANDLERS = self.server.handlers
            emu.Router(self).handle(method)
            if method != "GET":  # the handlers above change buckets and objects in place too
                self.storage.dirty = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")


FLUSH_SECONDS = 1.0


def _flush(storage: PolicyStorage) -> None:
    with _Handler.lock:
        storage.flush()


def _flush_every(storage: PolicyStorage, stop: threading.Event) -> None:
    while not stop.wait(FLUSH_SECONDS):
        _flush(storage)


def _relink(storage: PolicyStorage, base_url: str) -> None:
    """Point the media links of objects found on disk at this server (an earlier one wrote its own
    address into them)."""
    for objects in storage.objects.values():
        for obj in objects.values():
            link = obj.get("mediaLink")
            if isinstance(link, str) and "/download/" in link:
                obj["mediaLink"] = base_url + link[link.index("/download/") :]


def serve(
    host: str, port: int, roles_file: str | None = None, data_dir: str | None = None
) -> http_server.ThreadingHTTPServer:
    """A started server (in a daemon thread); `shutdown()` stops it. With `data_dir`, buckets and
    objects are kept on disk there and found again by the next server on it."""
    if data_dir:
        storage = PolicyStorage(use_memory_fs=False, data_dir=str(Path(data_dir).resolve()))
        _relink(storage, f"http://{host}:{port}")
    else:
        storage = PolicyStorage(use_memory_fs=True)
    httpd = http_server.ThreadingHTTPServer((host, port), partial(_Handler, storage))
    httpd.daemon_threads = True
    httpd.storage = storage  # type: ignore[attr-defined]
    httpd.handlers = handlers(RoleBook(roles_file))  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    if data_dir:
        threading.Thread(target=_flush_every, args=(storage, threading.Event()), daemon=True).start()
    return httpd


def stop(httpd: http_server.ThreadingHTTPServer) -> None:
    """Stop a server `serve` started and write what it holds on disk."""
    httpd.shutdown()
    _flush(httpd.storage)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4445)
    parser.add_argument("--roles", help="YAML file of custom roles (deployments/iam/roles.yaml)")
    parser.add_argument("--data-dir", help="keep buckets and objects on disk here (default: in memory)")
    args = parser.parse_args()
    httpd = serve(args.host, args.port, args.roles, args.data_dir)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    stop(httpd)


if __name__ == "__main__":
    main()
