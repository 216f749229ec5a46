"""A local Backup for GKE server speaking the real gRPC protocol, for tests and the demo.

It serves the `google.cloud.gkebackup.v1.BackupForGKE` methods Backstop uses (backup plans,
backups, volume backups, restore plans, restores) and `google.longrunning.Operations.GetOperation`
from the in-memory model in `localdev.servers.gke_model`, so the real
`google.cloud.gke_backup_v1.BackupForGKEClient` works against it over an insecure channel
(set GKE_BACKUP_EMULATOR_HOST=127.0.0.1:PORT). The model's admin hooks (fault injection, cluster
contents) are reachable over gRPC with `admin_call(target, action, **kwargs)`.

Importing this module registers the server as `EXTRA_SERVICES["gke"]` of the local platform.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.longrunning import operations_pb2

from localdev.servers.gke_cluster import DEMO_CLUSTERS, copy_namespaces, namespace_renames
from localdev.servers.gke_model import Abort, GkeBackupModel, t
from localdev.servers.gke_objects import PLURALS, namespace_objects

SERVICE = "google.cloud.gkebackup.v1.BackupForGKE"
ADMIN_METHOD = "/localdev.servers.GkeAdmin/Call"
__all__ = ["DEMO_CLUSTERS", "Abort", "GkeBackupServer", "admin_call", "namespace_renames", "run_server"]


class GkeBackupServer(GkeBackupModel):
    """The in-memory Backup for GKE model served over gRPC on 127.0.0.1:`port` (0 = any free port)."""

    def __init__(
        self, port: int = 0, polls: int = 2, delay: float = 0.0, demo: bool = True, kube_port: int = 0
    ) -> None:
        super().__init__(polls=polls, delay=delay, demo=demo)
        self.port, self.kube_port = port, kube_port
        self._server: grpc.Server | None = None
        self._kube: KubeNamespaces | None = None

    @property
    def kube_url(self) -> str:
        """KUBERNETES_EMULATOR_HOST: each modelled cluster's API at <url>/<cluster full name>."""
        return f"http://127.0.0.1:{self.kube_port}"

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> GkeBackupServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method, (request_cls, response_cls, fn) in self._methods().items():
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._wrap(fn), request_deserializer=request_cls.deserialize, response_serializer=response_cls
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        ops = {
            "GetOperation": grpc.unary_unary_rpc_method_handler(
                self._wrap(self.get_operation),
                request_deserializer=operations_pb2.GetOperationRequest.FromString,
                response_serializer=operations_pb2.Operation.SerializeToString,
            )
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("google.longrunning.Operations", ops),)
        )
        admin = {
            "Call": grpc.unary_unary_rpc_method_handler(
                self._wrap(self._admin_call), request_deserializer=None, response_serializer=None
            )
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("localdev.servers.GkeAdmin", admin),)
        )
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        self._kube = KubeNamespaces(self, self.kube_port).start()
        self.kube_port = self._kube.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait()
            self._server = None
        if self._kube is not None:
            self._kube.stop()
            self._kube = None

    def _wrap(self, fn: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                with self.lock:
                    return fn(request)
            except Abort as exc:
                context.abort(exc.code, str(exc))

        return handler

    def _admin_call(self, request: bytes) -> bytes:
        body = json.loads(request or b"{}")
        return json.dumps(self.admin(body.pop("action"), **body)).encode()

    def _methods(self) -> dict[str, tuple[Any, Callable[[Any], bytes], Callable[[Any], Any]]]:
        op = operations_pb2.Operation.SerializeToString
        g = t.gkebackup
        return {
            "CreateBackupPlan": (g.CreateBackupPlanRequest, op, self.create_backup_plan),
            "GetBackupPlan": (g.GetBackupPlanRequest, t.BackupPlan.serialize, self.get_backup_plan),
            "ListBackupPlans": (
                g.ListBackupPlansRequest,
                g.ListBackupPlansResponse.serialize,
                self.list_backup_plans,
            ),
            "UpdateBackupPlan": (g.UpdateBackupPlanRequest, op, self.update_backup_plan),
            "CreateBackup": (g.CreateBackupRequest, op, self.create_backup),
            "GetBackup": (
                g.GetBackupRequest,
                t.Backup.serialize,
                lambda r: self._get(self.backups, r.name, "backup"),
            ),
            "ListBackups": (g.ListBackupsRequest, g.ListBackupsResponse.serialize, self.list_backups),
            "DeleteBackup": (g.DeleteBackupRequest, op, self.delete_backup),
            "ListVolumeBackups": (
                g.ListVolumeBackupsRequest,
                g.ListVolumeBackupsResponse.serialize,
                self.list_volume_backups,
            ),
            "CreateRestorePlan": (g.CreateRestorePlanRequest, op, self.create_restore_plan),
            "GetRestorePlan": (
                g.GetRestorePlanRequest,
                t.RestorePlan.serialize,
                lambda r: self._get(self.restore_plans, r.name, "restore plan"),
            ),
            "ListRestorePlans": (
                g.ListRestorePlansRequest,
                g.ListRestorePlansResponse.serialize,
                self.list_restore_plans,
            ),
            "DeleteRestorePlan": (g.DeleteRestorePlanRequest, op, self.delete_restore_plan),
            "CreateRestore": (g.CreateRestoreRequest, op, self.create_restore),
            "GetRestore": (
                g.GetRestoreRequest,
                t.Restore.serialize,
                lambda r: self._get(self.restores, r.name, "restore"),
            ),
            "ListRestores": (g.ListRestoresRequest, g.ListRestoresResponse.serialize, self.list_restores),
        }


class KubeNamespaces:
    """The Kubernetes API of every modelled cluster, over HTTP, at `/<cluster full name>/...`: list,
    get and delete namespaces (`api/v1/namespaces[/<name>]`, what drills clean up with), and list a
    namespace's objects of the kinds in `gke_objects.PLURALS` (`api/v1/namespaces/<ns>/configmaps`,
    `apis/apps/v1/namespaces/<ns>/deployments`, ...), synthesized from its spec."""

    def __init__(self, model: GkeBackupModel, port: int = 0) -> None:
        self.model, self.port = model, port
        self._http: ThreadingHTTPServer | None = None

    def start(self) -> KubeNamespaces:
        model = self.model

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self) -> None:
                self._answer(404, {"kind": "Status", "reason": "NotFound"})

            def _route(self) -> tuple[str, str, str, str] | None:
                """(cluster, API prefix, namespace, plural) of the request path; None: not an API path."""
                path = urlsplit(self.path).path.strip("/")
                for prefix in ("api/v1", "apis/apps/v1"):
                    cluster, marker, rest = path.partition(f"/{prefix}/namespaces")
                    if marker and (not rest or rest.startswith("/")):
                        parts = [*rest.strip("/").split("/"), "", ""]
                        return cluster, prefix, parts[0], parts[1]
                return None

            def do_GET(self) -> None:
                route = self._route()
                with model.lock:
                    spaces = model.clusters.get(route[0]) if route else None
                    spaces = copy_namespaces(spaces) if spaces is not None else None
                if route is None or spaces is None:
                    return self._not_found()
                cluster, prefix, namespace, plural = route
                if plural:
                    if PLURALS.get(plural, ("",))[0] != prefix:
                        return self._not_found()
                    spec = spaces.get(namespace)
                    items = namespace_objects(cluster, namespace, spec)[plural] if spec else []
                    return self._answer(200, {"kind": "List", "metadata": {}, "items": items})
                if prefix != "api/v1":
                    return self._not_found()
                items = [{"metadata": {"name": n}, "status": {"phase": "Active"}} for n in sorted(spaces)]
                if not namespace:
                    return self._answer(200, {"kind": "NamespaceList", "metadata": {}, "items": items})
                found = [i for i in items if i["metadata"]["name"] == namespace]
                self._answer(200, found[0]) if found else self._not_found()

            def do_DELETE(self) -> None:
                route = self._route()
                if route is None or not route[2] or route[3] or route[1] != "api/v1":
                    return self._not_found()
                with model.lock:
                    gone = model.delete_namespace(route[0], route[2])
                code = 200 if gone else 404
                self._answer(code, {"kind": "Status", "status": "Success" if gone else "Failure"})

        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


def admin_call(target: str, action: str, timeout: float = 10.0, **kwargs: Any) -> Any:
    """Call an admin hook (fail_next_backup, shrink_next_backup, deny, namespaces, ...) of a running server."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(ADMIN_METHOD)
        return json.loads(call(json.dumps({"action": action, **kwargs}).encode(), timeout=timeout))


def run_server(
    port: int, polls: int = 2, delay: float = 0.5, kube_port: int = 0, state_file: str | None = None
) -> None:
    """Serve the demo clusters on 127.0.0.1:`port` (their Kubernetes API on `kube_port`) until
    interrupted; with `state_file`, what it holds is kept there across restarts."""
    from localdev.servers.kept_state import keep_state

    server = GkeBackupServer(port=port, polls=polls, delay=delay, kube_port=kube_port)
    keep_state(state_file, server.lock, server.saved, server.restore_saved)
    server.start()
    print(f"Backup for GKE local server on {server.target}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


def _service(platform: Any) -> Any:
    import sys

    from localdev.platform import Service, free_port, port_open

    port = platform.ports.get("gke") or free_port()
    kube = platform.ports.get("kubernetes") or free_port()
    platform.ports["gke"], platform.ports["kubernetes"] = port, kube
    kept = ["--state-file", str(platform.state_dir / "gke.state")] if platform.persistent else []
    return Service(
        "gke",
        [
            sys.executable,
            "-m",
            "localdev.servers.gke_server",
            "--port",
            str(port),
            "--kube-port",
            str(kube),
            *kept,
        ],
        lambda: port_open(port) and port_open(kube),
        endpoints={
            "GKE_BACKUP_EMULATOR_HOST": f"127.0.0.1:{port}",
            "KUBERNETES_EMULATOR_HOST": f"http://127.0.0.1:{kube}",
        },
        timeout=30.0,
    )


def _register() -> None:
    from localdev.platform import EXTRA_SERVICES

    EXTRA_SERVICES.setdefault("gke", _service)


_register()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Local Backup for GKE server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--polls", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--kube-port", type=int, default=0)
    parser.add_argument("--state-file", help="keep what the server holds in this file across restarts")
    args = parser.parse_args()
    run_server(args.port, args.polls, args.delay, args.kube_port, args.state_file)
