"""A local Cloud Storage JSON API server that enforces holds, retention policies and bucket IAM.

No Cloud Storage emulator here keeps object holds or enforces a retention policy (fake-gcs-server
keeps no bucket configuration at all; gcp-storage-emulator stores a retention policy but deletes
through it). This module extends gcp-storage-emulator (pure Python, in memory) with what the real
JSON API does for the hardening checks, so the real `google-cloud-storage` client drives it:

- objects (localdev/servers/gcs_policy_storage.py, the handlers in gcs_policy_handlers.py):
  `temporaryHold` and `eventBasedHold` are kept (insert, patch); deleting or replacing an
  object under a hold, or younger than the bucket's retention period, is refused with 403 and the
  real API's message; `retentionExpirationTime` is reported on every object of a bucket with a
  retention policy.
- buckets (localdev/servers/gcs_policy_handlers.py): `insert` keeps the configuration sent with it
  (location, retention policy, IAM configuration, default KMS key); a retention policy can be set,
  lengthened, shortened or removed until `lockRetentionPolicy` locks it (metageneration
  precondition required); a locked policy can only be lengthened; a retention policy and object
  versioning are refused together.
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
  out on connect); connections are kept open between requests (HTTP/1.1), as Google's are.
- the batch endpoint (`POST /batch/storage/v1`, at most 100 requests a batch) serves each of its
  requests as the same request sent alone (localdev/servers/gcs_batch.py).
- with `--data-dir`, buckets and objects are kept on disk (localdev/servers/gcs_disk.py).

Run: `python -m localdev.servers.gcs_policy_server --port 4445 [--roles deployments/iam/roles.yaml]
[--data-dir DIR]` (without `--data-dir`, in memory).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import threading
from functools import partial
from http import HTTPStatus
from http import server as http_server
from pathlib import Path
from typing import Any

from gcp_storage_emulator import server as emu
from gcp_storage_emulator.handlers import buckets as emu_buckets

from localdev.servers import gcs_batch as batch
from localdev.servers import gcs_object_retention as object_retention
from localdev.servers.gcs_disk import LOCK, flush, flush_every, relink
from localdev.servers.gcs_iam import Denied, RoleBook, require_permissions, route_needs, test_iam_permissions
from localdev.servers.gcs_policy_handlers import (
    BadRequest,
    PreconditionFailed,
    bucket_insert,
    bucket_patch,
    lock_retention_policy,
    object_copy,
    object_insert,
    object_patch,
)
from localdev.servers.gcs_policy_storage import CALL, Forbidden, PolicyStorage
from localdev.servers.listening import Server

API = "/storage/v1"


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


OBJECT_OF = {"bucket_name": "object_id", "dest_bucket_name": "dest_object_id"}  # route parameters


def _guarded(handler: Any, needs: dict[str, str] | None = None, roles: RoleBook | None = None) -> Any:
    """Check the caller's IAM permissions (`needs`: bucket parameter -> permission), then run the
    handler; the refusals of this server's modules become the JSON error responses of the real API."""

    def run(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        CALL.request, CALL.storage, CALL.roles, CALL.retention = request, storage, roles, None
        try:
            for param, permission in (needs or {}).items():
                obj = request.params.get(OBJECT_OF[param])
                require_permissions(request, storage, request.params.get(param), roles, {permission}, obj)
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
        if methods.get("POST") in (emu.objects.copy, emu.objects.rewrite):
            methods["POST"] = object_copy
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
    lock = LOCK
    # Connections are kept open between requests, as Google's front ends keep them: over HTTP/1.0
    # every request was a new TCP connection, whose set-up and teardown cost a Python client more
    # CPU than the request itself (a Go client like rclone much less). Every response states its
    # length (the emulator's Response does). Headers and body are two writes: without TCP_NODELAY
    # the body waits for the client's delayed ACK of the headers (40 ms a request).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _serve(self, method: str) -> None:
        # The body is read whole before routing: a handler that answers without reading it (a
        # refusal) must not leave it on the connection, where it would be read as the next request.
        # A chunked body is read only by the handlers that want it: the connection closes after it.
        stream = self.rfile
        length = self.headers.get("Content-Length")
        body = b""
        if length:
            body = stream.read(int(length))
            self.rfile = io.BytesIO(body)
        elif self.headers.get("Transfer-Encoding"):
            self.close_connection = True
        try:
            if method == "POST" and self.path.partition("?")[0] == batch.PATH:
                self._batch(body)
            else:
                self._route(self, method)
        finally:
            self.rfile = stream

    def _route(self, request: Any, method: str) -> None:
        """Serve `request` (this connection's, or one part of a batch) through the server's routes."""
        with self.lock:  # one lock for every server of this process: each routes with its own roles
            emu.HANDLERS = self.server.handlers
            emu.Router(request).handle(method)
            if method != "GET":  # the handlers above change buckets and objects in place too
                self.storage.dirty = True

    def _batch(self, request: bytes) -> None:
        status, content_type, body = batch.serve_batch(
            self, request, lambda part: self._route(part, part.command)
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


def serve(
    host: str, port: int, roles_file: str | None = None, data_dir: str | None = None
) -> http_server.ThreadingHTTPServer:
    """A started server (in a daemon thread); `shutdown()` stops it. With `data_dir`, buckets and
    objects are kept on disk there and found again by the next server on it."""
    if data_dir:
        storage = PolicyStorage(use_memory_fs=False, data_dir=str(Path(data_dir).resolve()))
        relink(storage, f"http://{host}:{port}")
    else:
        storage = PolicyStorage(use_memory_fs=True)
    httpd = Server((host, port), partial(_Handler, storage))
    httpd.storage = storage  # type: ignore[attr-defined]
    httpd.handlers = handlers(RoleBook(roles_file))  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    if data_dir:
        threading.Thread(target=flush_every, args=(storage, threading.Event()), daemon=True).start()
    return httpd


def stop(httpd: http_server.ThreadingHTTPServer) -> None:
    """Stop a server `serve` started and write what it holds on disk."""
    httpd.shutdown()
    flush(httpd.storage)  # type: ignore[attr-defined]


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
