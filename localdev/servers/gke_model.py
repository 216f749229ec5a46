"""The in-memory Backup for GKE model behind the local server (`localdev.servers.gke_server`).

Clusters are modelled in memory: each holds namespaces with a number of Kubernetes resources,
pods, volumes and bytes, and optionally the named objects in it (`objects`: ["Kind/name", ...]).
A backup snapshots the selected namespaces; a restore applies them (with namespace renames from
transformation rules, and only the objects a `Restore.filter` selects) to the target cluster, so a
test can observe what came back. Long-running operations stay pending for `polls` GetOperation
calls. Backups inside their delete-lock period refuse deletion with FAILED_PRECONDITION.

Handlers take the request message and return the response message (or an Operation); they raise
`Abort` to answer with a gRPC status. Fault injection: `fail_next_backup(reason)`,
`shrink_next_backup(factor)`, `deny(project)`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.cloud.gke_backup_v1 import types as gke_types
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from localdev.servers.gke_cluster import (
    DEMO_CLUSTERS,
    DEMO_LOCATION,
    DEMO_PROJECT,
    Namespaces,
    claims,
    copy_namespaces,
    namespace_renames,
    restore_into,
)

t: Any = gke_types  # proto-plus enums confuse mypy; the messages are checked by the client


class Abort(Exception):
    """Raised inside a handler to answer with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


class GkeBackupModel:
    """The in-memory Backup for GKE service: clusters, plans, backups, restores, operations."""

    def __init__(self, polls: int = 2, delay: float = 0.0, demo: bool = True) -> None:
        self.polls = polls
        self.delay = delay
        self.lock = threading.RLock()
        self.clusters: dict[str, Namespaces] = {}
        self.plans: dict[str, t.BackupPlan] = {}
        self.backups: dict[str, t.Backup] = {}
        self.contents: dict[str, Namespaces] = {}
        self.volumes: dict[str, list[t.VolumeBackup]] = {}
        self.restore_plans: dict[str, t.RestorePlan] = {}
        self.restores: dict[str, t.Restore] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.denied: set[str] = set()
        self.faults: dict[str, Any] = {}
        self._ids = itertools.count(1)
        if demo:
            for cluster, namespaces in DEMO_CLUSTERS.items():
                self.add_cluster(
                    f"projects/{DEMO_PROJECT}/locations/{DEMO_LOCATION}/clusters/{cluster}", namespaces
                )

    # -- kept across restarts (localdev/servers/kept_state.py) ---------------------------------
    KEPT = ("clusters", "plans", "backups", "contents", "volumes", "restore_plans", "restores", "denied")

    def saved(self) -> dict[str, Any]:
        """What a restart keeps: clusters, plans, backups, restores (not operations in flight)."""
        following = next(self._ids)
        self._ids = itertools.count(following)
        return {name: getattr(self, name) for name in self.KEPT} | {"next_id": following}

    def restore_saved(self, value: dict[str, Any]) -> None:
        for name in self.KEPT:
            setattr(self, name, value[name])
        self._ids = itertools.count(int(value["next_id"]))

    # -- admin hooks (tests, demo) -------------------------------------------------------------
    def add_cluster(self, cluster: str, namespaces: Namespaces) -> None:
        """Model a cluster (full name) holding `namespaces`.

        Each namespace is {resources, pods, volumes, bytes} counts, optionally with `objects`:
        the names ("Kind/name") of the objects in it, which a restore filter selects from.
        """
        with self.lock:
            self.clusters[cluster] = copy_namespaces(namespaces)

    def namespaces(self, cluster: str) -> Namespaces:
        """The namespaces of `cluster` as they are now (a copy)."""
        with self.lock:
            return copy_namespaces(self.clusters.get(cluster, {}))

    def delete_namespace(self, cluster: str, namespace: str) -> bool:
        with self.lock:
            return self.clusters.get(cluster, {}).pop(namespace, None) is not None

    def set_namespace(self, cluster: str, namespace: str, spec: dict[str, Any]) -> None:
        """Create `namespace` in `cluster` as `spec`, or change it to `spec` (what a deploy does)."""
        with self.lock:
            self._cluster(cluster)[namespace] = copy_namespaces({namespace: spec})[namespace]

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
            "set_namespace",
            "fail_next_backup",
            "shrink_next_backup",
            "deny",
        }
        if action not in allowed:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown admin action {action!r}")
        return getattr(self, action)(**kwargs)

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

    def _cluster(self, cluster: str) -> Namespaces:
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
        snapshot = copy_namespaces({ns: cluster[ns] for ns in chosen})
        backup = t.Backup(
            name=name,
            uid=f"uid-{next(self._ids)}",
            create_time=_now(),
            manual=True,
            retain_days=request.backup.retain_days or plan.retention_policy.backup_retain_days,
            delete_lock_days=plan.retention_policy.backup_delete_lock_days,
            delete_lock_expire_time=datetime.now(UTC)
            + timedelta(days=plan.retention_policy.backup_delete_lock_days),
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
            pvcs = [  # (namespace, PVC name) of every volume, the first `volumes` of them backed up
                (ns, pvc) for ns, spec in snapshot.items() for pvc in claims(spec)
            ]
            self.volumes[name] = [
                t.VolumeBackup(
                    name=f"{name}/volumeBackups/vb-{i}",
                    source_pvc=t.NamespacedName(namespace=ns, name=pvc),
                    state=t.VolumeBackup.State.SUCCEEDED,
                    storage_bytes=total["bytes"] // max(volumes, 1),
                    complete_time=_now(),
                )
                for i, (ns, pvc) in enumerate(pvcs[:volumes])
            ]
            return backup, None

        return self._operation(name, name, "create", finish)

    def list_backups(self, request: Any) -> Any:
        self._get(self.plans, request.parent, "backup plan")
        found = [b for n, b in sorted(self.backups.items()) if n.startswith(request.parent + "/")]
        return t.gkebackup.ListBackupsResponse(backups=found)

    def delete_backup(self, request: Any) -> operations_pb2.Operation:
        backup: t.Backup = self._get(self.backups, request.name, "backup")
        if backup.delete_lock_days and backup.delete_lock_expire_time > datetime.now(UTC):
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"backup {request.name!r} is delete-locked until "
                f"{backup.delete_lock_expire_time.isoformat()} (delete_lock_days {backup.delete_lock_days})",
            )
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
        selectors = request.restore.filter
        for selector in [*selectors.inclusion_filters, *selectors.exclusion_filters]:
            if selector.labels or not (
                selector.group_kind.resource_kind or selector.name or selector.namespace
            ):
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"resource selector {selector} must name a kind, name or namespace (labels not modelled)",
                )
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
            filter=selectors,
        )
        self.restores[name] = restore
        contents = self.contents[backup.name]
        filtered = bool(selectors.inclusion_filters or selectors.exclusion_filters)

        def finish() -> tuple[Any, str | None]:
            cluster = self._cluster(plan.cluster)
            if config.all_namespaces or config.excluded_namespaces.namespaces:
                chosen = list(contents)
            else:
                chosen = [ns for ns in config.selected_namespaces.namespaces if ns in contents]
            chosen = [ns for ns in chosen if ns not in config.excluded_namespaces.namespaces]
            mode = config.namespaced_resource_restore_mode
            restore.complete_time = restore.update_time = _now()
            replace = mode in (
                t.RestoreConfig.NamespacedResourceRestoreMode.DELETE_AND_RESTORE,
                t.RestoreConfig.NamespacedResourceRestoreMode.MERGE_REPLACE_ON_CONFLICT,
            )
            volumes = (
                config.volume_data_restore_policy
                != t.RestoreConfig.VolumeDataRestorePolicy.NO_VOLUME_DATA_RESTORATION
            ) and backup.contains_volume_data
            renames = namespace_renames(config)
            outcome = restore_into(
                cluster, contents, chosen, renames, selectors if filtered else None, replace
            )
            if isinstance(outcome, str):
                reason = f"{outcome} in {plan.cluster} (namespacedResourceRestoreMode {mode.name})"
                restore.state, restore.state_reason = t.Restore.State.FAILED, reason
                return restore, f"restore {name} failed: {reason}"
            restored, volumes_restored = outcome[0], outcome[1] if volumes else 0
            restore.state = t.Restore.State.SUCCEEDED
            restore.resources_restored_count = restored
            restore.resources_excluded_count = sum(s["resources"] for s in contents.values()) - restored
            restore.volumes_restored_count = volumes_restored
            return restore, None

        return self._operation(name, name, "create", finish)
