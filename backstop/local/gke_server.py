"""A local Backup for GKE server speaking the real gRPC protocol, for tests and the demo.

It implements the `google.cloud.gkebackup.v1.BackupForGKE` methods Backstop uses (backup plans,
backups, volume backups, restore plans, restores) and `google.longrunning.Operations.GetOperation`,
so the real `google.cloud.gke_backup_v1.BackupForGKEClient` works against it over an insecure
channel (set GKE_BACKUP_EMULATOR_HOST=127.0.0.1:PORT).

Clusters are modelled in memory: each holds namespaces with a number of Kubernetes resources,
pods, volumes and bytes. A backup snapshots the selected namespaces; a restore applies them (with
namespace renames from transformation rules) to the target cluster, so a test can observe the
restored namespace. Long-running operations stay pending for `polls` GetOperation calls.

Fault injection (tests and the demo): `fail_next_backup(reason)`, `shrink_next_backup(factor)`,
`deny(project)`; the same over gRPC with `admin_call(target, action, **kwargs)`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
from google.cloud.gke_backup_v1 import types as gke_types
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

SERVICE = "google.cloud.gkebackup.v1.BackupForGKE"
ADMIN_METHOD = "/backstop.local.GkeAdmin/Call"
t: Any = gke_types  # proto-plus enums confuse mypy; the messages are checked by the client
DEMO_PROJECT = "backstop-demo"
DEMO_LOCATION = "us-central1"
DEMO_CLUSTERS: dict[str, dict[str, dict[str, int]]] = {
    "prod": {
        "shop": {"resources": 42, "pods": 6, "volumes": 2, "bytes": 3 * 2**30},
        "payments": {"resources": 27, "pods": 4, "volumes": 1, "bytes": 2**30},
        "monitoring": {"resources": 35, "pods": 5, "volumes": 1, "bytes": 512 * 2**20},
    },
    "staging": {"shop": {"resources": 40, "pods": 3, "volumes": 1, "bytes": 2**29}},
}


class Abort(Exception):
    """Raised inside a handler to answer with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def _parent(name: str, levels: int) -> str:
    return "/".join(name.split("/")[: -2 * levels])


class GkeBackupServer:
    """The in-memory Backup for GKE service and its gRPC server on 127.0.0.1."""

    def __init__(self, port: int = 0, polls: int = 2, delay: float = 0.0, demo: bool = True) -> None:
        self.port = port
        self.polls = polls
        self.delay = delay
        self.lock = threading.RLock()
        self.clusters: dict[str, dict[str, dict[str, int]]] = {}
        self.plans: dict[str, t.BackupPlan] = {}
        self.backups: dict[str, t.Backup] = {}
        self.contents: dict[str, dict[str, dict[str, int]]] = {}
        self.volumes: dict[str, list[t.VolumeBackup]] = {}
        self.restore_plans: dict[str, t.RestorePlan] = {}
        self.restores: dict[str, t.Restore] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.denied: set[str] = set()
        self.faults: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._server: grpc.Server | None = None
        if demo:
            for cluster, namespaces in DEMO_CLUSTERS.items():
                self.add_cluster(
                    f"projects/{DEMO_PROJECT}/locations/{DEMO_LOCATION}/clusters/{cluster}", namespaces
                )

    # -- admin hooks (tests, demo) -------------------------------------------------------------
    def add_cluster(self, cluster: str, namespaces: dict[str, dict[str, int]]) -> None:
        """Model a cluster (full name) holding `namespaces` {name: {resources, pods, volumes, bytes}}."""
        with self.lock:
            self.clusters[cluster] = {ns: dict(spec) for ns, spec in namespaces.items()}

    def namespaces(self, cluster: str) -> dict[str, dict[str, int]]:
        with self.lock:
            return {ns: dict(spec) for ns, spec in self.clusters.get(cluster, {}).items()}

    def delete_namespace(self, cluster: str, namespace: str) -> bool:
        with self.lock:
            return self.clusters.get(cluster, {}).pop(namespace, None) is not None

    def fail_next_backup(self, reason: str) -> None:
        self.faults["fail"] = reason

    def shrink_next_backup(self, factor: float) -> None:
        self.faults["shrink"] = factor

    def deny(self, project: str) -> None:
        self.denied.add(project)

    def admin(self, action: str, **kwargs: Any) -> Any:
        allowed = {
            "add_cluster",
            "namespaces",
            "delete_namespace",
            "fail_next_backup",
            "shrink_next_backup",
            "deny",
        }
        if action not in allowed:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown admin action {action!r}")
        return getattr(self, action)(**kwargs)

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
            (grpc.method_handlers_generic_handler("backstop.local.GkeAdmin", admin),)
        )
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait()
            self._server = None

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

    # -- helpers ---------------------------------------------------------------------------------
    def _check(self, name: str) -> None:
        parts = name.split("/")
        if len(parts) < 4 or parts[0] != "projects" or parts[2] != "locations":
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed resource name {name!r}")
        if parts[1] in self.denied:
            raise Abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'gkebackup.*' denied on resource '{name}' (or it may not exist)",
            )

    def _get(self, table: dict[str, Any], name: str, kind: str) -> Any:
        self._check(name)
        if name not in table:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"{kind} {name!r} not found")
        return table[name]

    def _new(self, table: dict[str, Any], parent: str, collection: str, item_id: str, kind: str) -> str:
        self._check(parent)
        if not item_id:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{kind} id is required")
        name = f"{parent}/{collection}/{item_id}"
        if name in table:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"{kind} {name!r} already exists")
        return name

    def _cluster(self, cluster: str) -> dict[str, dict[str, int]]:
        self._check(cluster)
        if cluster not in self.clusters:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"cluster {cluster!r} not found")
        return self.clusters[cluster]

    def _operation(
        self, parent: str, target: str, verb: str, finish: Callable[[], tuple[Any, str | None]]
    ) -> operations_pb2.Operation:
        location = "/".join(parent.split("/")[:4])
        name = f"{location}/operations/operation-{next(self._ids)}"
        meta = t.OperationMetadata(create_time=_now(), target=target, verb=verb, api_version="v1")
        self.operations[name] = {
            "polls": self.polls,
            "ready_at": time.monotonic() + self.delay,
            "finish": finish,
            "meta": meta,
            "op": operations_pb2.Operation(name=name, done=False),
        }
        return self._pack_meta(self.operations[name])

    @staticmethod
    def _pack_meta(record: dict[str, Any]) -> operations_pb2.Operation:
        op: operations_pb2.Operation = record["op"]
        meta = any_pb2.Any()
        meta.Pack(t.OperationMetadata.pb(record["meta"]))
        op.metadata.CopyFrom(meta)
        return op

    def get_operation(self, request: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        record = self._get(self.operations, request.name, "operation")
        op: operations_pb2.Operation = record["op"]
        if not op.done:
            record["polls"] -= 1
            if record["polls"] <= 0 and time.monotonic() >= record["ready_at"]:
                response, error = record["finish"]()
                record["meta"].end_time = _now()
                if error:
                    op.error.CopyFrom(status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=error))
                else:
                    packed = any_pb2.Any()  # deletes answer google.protobuf.Empty
                    packed.Pack(empty_pb2.Empty() if response is None else type(response).pb(response))
                    op.response.CopyFrom(packed)
                op.done = True
                record["meta"].status_message = "done"
            else:
                record["meta"].status_message = f"running ({max(record['polls'], 0)} polls to go)"
        return self._pack_meta(record)

    # -- backup plans ----------------------------------------------------------------------------
    def create_backup_plan(self, request: Any) -> operations_pb2.Operation:
        name = self._new(self.plans, request.parent, "backupPlans", request.backup_plan_id, "backup plan")
        self._cluster(request.backup_plan.cluster)
        plan = t.BackupPlan(request.backup_plan)
        plan.name, plan.uid, plan.etag = name, f"uid-{next(self._ids)}", "1"
        plan.create_time = plan.update_time = _now()
        plan.state = t.BackupPlan.State.READY
        self.plans[name] = plan
        return self._operation(name, name, "create", lambda: (plan, None))

    def get_backup_plan(self, request: Any) -> t.BackupPlan:
        plan: t.BackupPlan = self._get(self.plans, request.name, "backup plan")
        return plan

    def list_backup_plans(self, request: Any) -> Any:
        self._check(request.parent)
        plans = [p for n, p in sorted(self.plans.items()) if n.startswith(request.parent + "/")]
        return t.gkebackup.ListBackupPlansResponse(backup_plans=plans)

    def update_backup_plan(self, request: Any) -> operations_pb2.Operation:
        plan: t.BackupPlan = self._get(self.plans, request.backup_plan.name, "backup plan")
        mask = field_mask_pb2.FieldMask(paths=list(request.update_mask.paths))
        if not mask.paths:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "update_mask is required")
        stored = t.BackupPlan.pb(plan)
        mask.MergeMessage(t.BackupPlan.pb(request.backup_plan), stored, True, True)
        updated = t.BackupPlan.wrap(stored)
        updated.etag = str(int(plan.etag or "1") + 1)
        updated.update_time = _now()
        self.plans[plan.name] = updated
        return self._operation(plan.name, plan.name, "update", lambda: (updated, None))

    # -- backups ---------------------------------------------------------------------------------
    def create_backup(self, request: Any) -> operations_pb2.Operation:
        plan: t.BackupPlan = self._get(self.plans, request.parent, "backup plan")
        backup_id = request.backup_id or f"backup-{next(self._ids)}"
        name = self._new(self.backups, request.parent, "backups", backup_id, "backup")
        config = plan.backup_config
        cluster = self._cluster(plan.cluster)
        if config.all_namespaces:
            chosen = list(cluster)
        elif config.selected_namespaces.namespaces:
            chosen = [ns for ns in config.selected_namespaces.namespaces if ns in cluster]
        else:
            chosen = sorted(
                {a.namespace for a in config.selected_applications.namespaced_names} & set(cluster)
            )
        snapshot = {ns: dict(cluster[ns]) for ns in chosen}
        backup = t.Backup(
            name=name,
            uid=f"uid-{next(self._ids)}",
            create_time=_now(),
            manual=True,
            retain_days=request.backup.retain_days or plan.retention_policy.backup_retain_days,
            delete_lock_days=plan.retention_policy.backup_delete_lock_days,
            encryption_key=config.encryption_key,
            all_namespaces=config.all_namespaces,
            contains_volume_data=config.include_volume_data,
            contains_secrets=config.include_secrets,
            cluster_metadata=t.Backup.ClusterMetadata(cluster=plan.cluster, gke_version="1.30.5-gke.1000"),
            state=t.Backup.State.IN_PROGRESS,
            labels=dict(request.backup.labels),
        )
        if config.selected_namespaces.namespaces:
            backup.selected_namespaces = config.selected_namespaces
        self.backups[name] = backup
        fail, shrink = self.faults.pop("fail", None), self.faults.pop("shrink", None)

        def finish() -> tuple[Any, str | None]:
            factor = float(shrink) if shrink is not None else 1.0
            total = {
                k: int(sum(s[k] for s in snapshot.values()) * factor)
                for k in ("resources", "pods", "volumes", "bytes")
            }
            volumes = total["volumes"] if config.include_volume_data else 0
            backup.complete_time = backup.update_time = _now()
            if fail:
                backup.state, backup.state_reason = t.Backup.State.FAILED, str(fail)
                return backup, f"backup {name} failed: {fail}"
            backup.state = t.Backup.State.SUCCEEDED
            backup.resource_count, backup.pod_count, backup.volume_count = (
                total["resources"],
                total["pods"],
                volumes,
            )
            backup.config_backup_size_bytes = 2048 * total["resources"]
            backup.size_bytes = backup.config_backup_size_bytes + (total["bytes"] if volumes else 0)
            self.contents[name] = snapshot
            self.volumes[name] = [
                t.VolumeBackup(
                    name=f"{name}/volumeBackups/vb-{i}",
                    state=t.VolumeBackup.State.SUCCEEDED,
                    storage_bytes=total["bytes"] // max(volumes, 1),
                    complete_time=_now(),
                )
                for i in range(volumes)
            ]
            return backup, None

        return self._operation(name, name, "create", finish)

    def list_backups(self, request: Any) -> Any:
        self._get(self.plans, request.parent, "backup plan")
        found = [b for n, b in sorted(self.backups.items()) if n.startswith(request.parent + "/")]
        return t.gkebackup.ListBackupsResponse(backups=found)

    def delete_backup(self, request: Any) -> operations_pb2.Operation:
        self._get(self.backups, request.name, "backup")
        del self.backups[request.name]
        self.contents.pop(request.name, None)
        return self._operation(request.name, request.name, "delete", lambda: (None, None))

    def list_volume_backups(self, request: Any) -> Any:
        self._get(self.backups, request.parent, "backup")
        return t.gkebackup.ListVolumeBackupsResponse(volume_backups=self.volumes.get(request.parent, []))

    # -- restore plans and restores --------------------------------------------------------------
    def create_restore_plan(self, request: Any) -> operations_pb2.Operation:
        name = self._new(
            self.restore_plans, request.parent, "restorePlans", request.restore_plan_id, "restore plan"
        )
        self._get(self.plans, request.restore_plan.backup_plan, "backup plan")
        self._cluster(request.restore_plan.cluster)
        plan = t.RestorePlan(request.restore_plan)
        plan.name, plan.uid, plan.state = name, f"uid-{next(self._ids)}", t.RestorePlan.State.READY
        plan.create_time = plan.update_time = _now()
        self.restore_plans[name] = plan
        return self._operation(name, name, "create", lambda: (plan, None))

    def list_restore_plans(self, request: Any) -> Any:
        self._check(request.parent)
        plans = [p for n, p in sorted(self.restore_plans.items()) if n.startswith(request.parent + "/")]
        return t.gkebackup.ListRestorePlansResponse(restore_plans=plans)

    def delete_restore_plan(self, request: Any) -> operations_pb2.Operation:
        self._get(self.restore_plans, request.name, "restore plan")
        children = [n for n in self.restores if n.startswith(request.name + "/")]
        if children and not request.force:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"restore plan {request.name!r} has restores: use force"
            )
        for child in children:
            del self.restores[child]
        del self.restore_plans[request.name]
        return self._operation(request.name, request.name, "delete", lambda: (None, None))

    def list_restores(self, request: Any) -> Any:
        self._get(self.restore_plans, request.parent, "restore plan")
        found = [r for n, r in sorted(self.restores.items()) if n.startswith(request.parent + "/")]
        return t.gkebackup.ListRestoresResponse(restores=found)

    def create_restore(self, request: Any) -> operations_pb2.Operation:
        plan: t.RestorePlan = self._get(self.restore_plans, request.parent, "restore plan")
        name = self._new(self.restores, request.parent, "restores", request.restore_id, "restore")
        backup: t.Backup = self._get(self.backups, request.restore.backup, "backup")
        if backup.state != t.Backup.State.SUCCEEDED or request.restore.backup not in self.contents:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"backup {backup.name!r} is not SUCCEEDED")
        config = plan.restore_config
        restore = t.Restore(
            name=name,
            uid=f"uid-{next(self._ids)}",
            create_time=_now(),
            backup=backup.name,
            cluster=plan.cluster,
            restore_config=config,
            state=t.Restore.State.IN_PROGRESS,
            labels=dict(request.restore.labels),
        )
        self.restores[name] = restore
        contents = self.contents[backup.name]

        def finish() -> tuple[Any, str | None]:
            cluster = self._cluster(plan.cluster)
            if config.all_namespaces:
                chosen = list(contents)
            else:
                chosen = [ns for ns in config.selected_namespaces.namespaces if ns in contents]
            chosen = [ns for ns in chosen if ns not in config.excluded_namespaces.namespaces]
            renames = namespace_renames(config)
            mode = config.namespaced_resource_restore_mode
            restore.complete_time = restore.update_time = _now()
            replace = mode in (
                t.RestoreConfig.NamespacedResourceRestoreMode.DELETE_AND_RESTORE,
                t.RestoreConfig.NamespacedResourceRestoreMode.MERGE_REPLACE_ON_CONFLICT,
            )
            clashes = [renames.get(ns, ns) for ns in chosen if renames.get(ns, ns) in cluster]
            if clashes and not replace:
                reason = (
                    f"namespace(s) {', '.join(clashes)} already exist in {plan.cluster} "
                    f"(namespacedResourceRestoreMode {mode.name})"
                )
                restore.state, restore.state_reason = t.Restore.State.FAILED, reason
                return restore, f"restore {name} failed: {reason}"
            for ns in chosen:
                cluster[renames.get(ns, ns)] = dict(contents[ns])
            volumes = (
                config.volume_data_restore_policy
                != t.RestoreConfig.VolumeDataRestorePolicy.NO_VOLUME_DATA_RESTORATION
            )
            restore.state = t.Restore.State.SUCCEEDED
            restore.resources_restored_count = sum(contents[ns]["resources"] for ns in chosen)
            restore.resources_excluded_count = sum(
                s["resources"] for ns, s in contents.items() if ns not in chosen
            )
            restore.volumes_restored_count = (
                sum(contents[ns]["volumes"] for ns in chosen)
                if volumes and backup.contains_volume_data
                else 0
            )
            return restore, None

        return self._operation(name, name, "create", finish)


def namespace_renames(config: t.RestoreConfig) -> dict[str, str]:
    """old -> new namespace, read from transformation rules that REPLACE /metadata/namespace."""
    renames = {}
    for rule in config.transformation_rules:
        for action in rule.field_actions:
            if (
                action.op == t.RestoreConfig.TransformationRuleAction.Op.REPLACE
                and action.path == "/metadata/namespace"
            ):
                for ns in rule.resource_filter.namespaces:
                    renames[ns] = action.value
    return renames


def admin_call(target: str, action: str, timeout: float = 10.0, **kwargs: Any) -> Any:
    """Call an admin hook (fail_next_backup, shrink_next_backup, deny, namespaces, ...) of a running server."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(ADMIN_METHOD)
        return json.loads(call(json.dumps({"action": action, **kwargs}).encode(), timeout=timeout))


def run_server(port: int, polls: int = 2, delay: float = 0.5) -> None:
    """Serve the demo clusters on 127.0.0.1:`port` until interrupted."""
    server = GkeBackupServer(port=port, polls=polls, delay=delay).start()
    print(f"Backup for GKE local server on {server.target}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


def _service(platform: Any) -> Any:
    import sys

    from backstop.platform import Service, free_port, port_open

    port = platform.ports.get("gke") or free_port()
    platform.ports["gke"] = port
    return Service(
        "gke",
        [sys.executable, "-m", "backstop.local.gke_server", "--port", str(port)],
        lambda: port_open(port),
        endpoints={"GKE_BACKUP_EMULATOR_HOST": f"127.0.0.1:{port}"},
        timeout=30.0,
    )


def _register() -> None:
    from backstop.platform import EXTRA_SERVICES

    EXTRA_SERVICES.setdefault("gke", _service)


_register()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Local Backup for GKE server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--polls", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.5)
    args = parser.parse_args()
    run_server(args.port, args.polls, args.delay)
