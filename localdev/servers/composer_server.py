"""A local Cloud Composer API: `google.cloud.orchestration.airflow.service.v1.Environments` over gRPC.

The real `EnvironmentsClient` talks to it over an insecure channel (blocks/clients.composer_client
does that when COMPOSER_EMULATOR_HOST is set). Implemented: CreateEnvironment, GetEnvironment,
ListEnvironments (paged), UpdateEnvironment (update_mask), SaveSnapshot, LoadSnapshot, and
`google.longrunning.Operations/GetOperation` for the long-running ones (an operation is reported
running once, then done, so clients really poll). Unknown environments answer NOT_FOUND naming them.

A snapshot keeps the environment's software config (what LoadSnapshot puts back) under a path
`<snapshot_location>/<env>_<time>`: like Composer, as a file in Cloud Storage there
(`<path>/environment.json`, on the local Cloud Storage server named by STORAGE_EMULATOR_HOST), so a
snapshot whose files are deleted is gone (LoadSnapshot answers NOT_FOUND); with no Cloud Storage
server, in this process's memory.

    python -m localdev.servers.composer_server --port 9070 --airflow-uri http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
from google.cloud.orchestration.airflow import service_v1 as composer
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import any_pb2, field_mask_pb2, json_format, message

from localdev.platform import EXTRA_SERVICES, LocalPlatform, Service, free_port, port_open
from localdev.servers.kept_state import keep_state

SERVICE = "google.cloud.orchestration.airflow.service.v1.Environments"
SNAPSHOT_FILE = "environment.json"


def _snapshot_blob(path: str) -> Any | None:
    """The Cloud Storage object a snapshot at `path` (gs://bucket/prefix) is kept in, when a local
    Cloud Storage server is configured."""
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        return None
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    bucket, _, prefix = path.removeprefix("gs://").partition("/")
    client = storage.Client(project="backstop-demo", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    return client.bucket(bucket).blob(f"{prefix}/{SNAPSHOT_FILE}")


class ComposerState:
    """Environments, operations and snapshots of one local Composer."""

    def __init__(self, airflow_uri: str = "") -> None:
        self.lock = threading.Lock()
        self.airflow_uri = airflow_uri
        self.environments: dict[str, Any] = {}  # name -> Environment pb
        self.operations: dict[str, operations_pb2.Operation] = {}
        self.polled: set[str] = set()
        self.snapshots: dict[str, Any] = {}  # path -> SoftwareConfig pb

    def saved(self) -> dict[str, Any]:
        """What a restart keeps (localdev/servers/kept_state.py): environments and snapshots kept
        here, as serialized messages (finished operations are not kept)."""
        return {
            "environments": {n: pb.SerializeToString() for n, pb in self.environments.items()},
            "snapshots": {p: pb.SerializeToString() for p, pb in self.snapshots.items()},
        }

    def restore_saved(self, value: dict[str, Any]) -> None:
        environment, software = composer.Environment.pb(), composer.SoftwareConfig.pb()
        self.environments = {n: environment.FromString(b) for n, b in value["environments"].items()}
        self.snapshots = {p: software.FromString(b) for p, b in value["snapshots"].items()}

    def operation(self, parent: str, response: Any, kind: int) -> operations_pb2.Operation:
        """A long-running operation that is done on its first poll."""
        name = f"{parent.split('/environments/')[0]}/operations/{uuid.uuid4()}"
        meta = composer.OperationMetadata(
            state=composer.OperationMetadata.State.SUCCEEDED, operation_type=kind, resource=parent
        )
        op = operations_pb2.Operation(name=name, done=True)
        op.metadata.Pack(composer.OperationMetadata.pb(meta))
        packed = any_pb2.Any()
        packed.Pack(type(response).pb(response) if hasattr(type(response), "pb") else response)
        op.response.CopyFrom(packed)
        with self.lock:
            self.operations[name] = op
        running = operations_pb2.Operation(name=name, done=False)
        running.metadata.CopyFrom(op.metadata)
        return running

    def get(self, name: str, context: grpc.ServicerContext) -> Any:
        with self.lock:
            env = self.environments.get(name)
        if env is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Environment {name} not found.")
        return env


class ComposerServicer:
    """The Environments methods, as plain functions over ComposerState."""

    def __init__(self, state: ComposerState) -> None:
        self.state = state

    def create_environment(self, request: Any, context: grpc.ServicerContext) -> operations_pb2.Operation:
        env = request.environment
        if "/environments/" not in env.name or not env.name.startswith(request.parent + "/environments/"):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"environment name {env.name!r} is not under {request.parent}",
            )
        pb = composer.Environment.pb(env)
        with self.state.lock:
            if env.name in self.state.environments:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Environment {env.name} already exists.")
            short = env.name.rsplit("/", 1)[-1]
            if not pb.config.dag_gcs_prefix:
                pb.config.dag_gcs_prefix = f"gs://{short}-bucket/dags"
            if not pb.config.airflow_uri:
                pb.config.airflow_uri = self.state.airflow_uri
            if not pb.config.software_config.image_version:
                pb.config.software_config.image_version = "composer-2.9.7-airflow-2.10.5"
            pb.uuid = str(uuid.uuid4())
            pb.state = composer.Environment.State.RUNNING
            pb.create_time.FromDatetime(datetime.now(UTC))
            pb.update_time.FromDatetime(datetime.now(UTC))
            self.state.environments[env.name] = pb
        return self.state.operation(
            env.name, composer.Environment.wrap(pb), composer.OperationMetadata.Type.CREATE
        )

    def get_environment(self, request: Any, context: grpc.ServicerContext) -> Any:
        return composer.Environment.wrap(self.state.get(request.name, context))

    def list_environments(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.state.lock:
            names = sorted(
                n for n in self.state.environments if n.startswith(request.parent + "/environments/")
            )
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = [composer.Environment.wrap(self.state.environments[n]) for n in names[start : start + size]]
        token = str(start + size) if start + size < len(names) else ""
        return composer.ListEnvironmentsResponse(environments=page, next_page_token=token)

    def update_environment(self, request: Any, context: grpc.ServicerContext) -> operations_pb2.Operation:
        current = self.state.get(request.name, context)
        mask = field_mask_pb2.FieldMask(paths=list(request.update_mask.paths))
        if not mask.paths:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "update_mask must name the fields to update")
        with self.state.lock:
            mask.MergeMessage(
                composer.Environment.pb(request.environment),
                current,
                replace_message_field=True,
                replace_repeated_field=True,
            )
            current.update_time.FromDatetime(datetime.now(UTC))
        return self.state.operation(
            request.name, composer.Environment.wrap(current), composer.OperationMetadata.Type.UPDATE
        )

    def save_snapshot(self, request: Any, context: grpc.ServicerContext) -> operations_pb2.Operation:
        env = self.state.get(request.environment, context)
        location = request.snapshot_location or env.config.dag_gcs_prefix.rsplit("/", 1)[0] + "/snapshots"
        path = f"{location.rstrip('/')}/{request.environment.rsplit('/', 1)[-1]}_{time.time_ns()}"
        with self.state.lock:
            saved = type(env.config.software_config)()
            saved.CopyFrom(env.config.software_config)
            blob = _snapshot_blob(path)
            if blob is None:
                self.state.snapshots[path] = saved
            else:
                raw = saved if isinstance(saved, message.Message) else type(saved).pb(saved)
                body = json_format.MessageToJson(raw)
                try:
                    blob.upload_from_string(body, content_type="application/json")
                except Exception as exc:  # e.g. no such bucket: the save fails, as Composer's does
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"Cannot write snapshot {path}: {exc}")
        return self.state.operation(
            request.environment,
            composer.SaveSnapshotResponse(snapshot_path=path),
            composer.OperationMetadata.Type.SAVE_SNAPSHOT,
        )

    def _saved(self, path: str) -> Any | None:
        """The software config saved at `path`, or None when the snapshot is gone."""
        blob = _snapshot_blob(path)
        if blob is None:
            return self.state.snapshots.get(path)
        from google.api_core import exceptions as gexc

        try:
            body = blob.download_as_bytes()
        except gexc.NotFound:
            return None
        saved = composer.SoftwareConfig.pb()()
        json_format.Parse(body, saved)
        return saved

    def load_snapshot(self, request: Any, context: grpc.ServicerContext) -> operations_pb2.Operation:
        env = self.state.get(request.environment, context)
        with self.state.lock:
            saved: Any = self._saved(request.snapshot_path)
            if saved is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Snapshot {request.snapshot_path} not found.")
            software = env.config.software_config
            if not request.skip_pypi_packages_installation:
                software.pypi_packages.clear()
                software.pypi_packages.update(saved.pypi_packages)
            if not request.skip_environment_variables_setting:
                software.env_variables.clear()
                software.env_variables.update(saved.env_variables)
            if not request.skip_airflow_overrides_setting:
                software.airflow_config_overrides.clear()
                software.airflow_config_overrides.update(saved.airflow_config_overrides)
        return self.state.operation(
            request.environment,
            composer.LoadSnapshotResponse(),
            composer.OperationMetadata.Type.LOAD_SNAPSHOT,
        )


class OperationsServicer(operations_pb2_grpc.OperationsServicer):  # type: ignore[misc]
    def __init__(self, state: ComposerState) -> None:
        self.state = state

    def GetOperation(self, request: Any, context: grpc.ServicerContext) -> operations_pb2.Operation:  # noqa: N802
        with self.state.lock:
            op = self.state.operations.get(request.name)
        if op is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Operation {request.name} not found.")
        return op


def _handler(servicer: ComposerServicer) -> grpc.GenericRpcHandler:
    op = operations_pb2.Operation
    methods: dict[str, tuple[Any, Any, Any]] = {
        "CreateEnvironment": (servicer.create_environment, composer.CreateEnvironmentRequest, None),
        "GetEnvironment": (servicer.get_environment, composer.GetEnvironmentRequest, composer.Environment),
        "ListEnvironments": (
            servicer.list_environments,
            composer.ListEnvironmentsRequest,
            composer.ListEnvironmentsResponse,
        ),
        "UpdateEnvironment": (servicer.update_environment, composer.UpdateEnvironmentRequest, None),
        "SaveSnapshot": (servicer.save_snapshot, composer.SaveSnapshotRequest, None),
        "LoadSnapshot": (servicer.load_snapshot, composer.LoadSnapshotRequest, None),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=request.deserialize,
            response_serializer=response.serialize if response is not None else op.SerializeToString,
        )
        for name, (fn, request, response) in methods.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class ComposerServer:
    """A local Composer API on 127.0.0.1:`port` (0 = any free port)."""

    def __init__(self, port: int = 0, airflow_uri: str = "") -> None:
        self.state = ComposerState(airflow_uri)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((_handler(ComposerServicer(self.state)),))
        operations_pb2_grpc.add_OperationsServicer_to_server(OperationsServicer(self.state), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.target = f"127.0.0.1:{self.port}"

    def add_environment(self, name: str, dag_gcs_prefix: str = "") -> None:
        """Create environment `name` directly (what the console would have done)."""
        env = composer.Environment(
            name=name, config=composer.EnvironmentConfig(dag_gcs_prefix=dag_gcs_prefix)
        )
        request = composer.CreateEnvironmentRequest(parent=name.split("/environments/")[0], environment=env)
        ComposerServicer(self.state).create_environment(request, None)

    def start(self) -> ComposerServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)


def _service(platform: LocalPlatform) -> Service:
    port = platform.ports.setdefault("composer", free_port())
    airflow = platform.ports.setdefault("airflow", free_port())
    gcs = platform.ports.get("gcs")
    kept = ["--state-file", str(platform.state_dir / "composer.state")] if platform.persistent else []
    return Service(
        "composer",
        [
            sys.executable,
            "-m",
            "localdev.servers.composer_server",
            "--port",
            str(port),
            "--airflow-uri",
            f"http://127.0.0.1:{airflow}",
            *kept,
        ],
        lambda: port_open(port),
        env={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs}"} if gcs else {},
        endpoints={"COMPOSER_EMULATOR_HOST": f"127.0.0.1:{port}"},
        timeout=30.0,
    )


EXTRA_SERVICES["composer"] = _service


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Cloud Composer Environments API (gRPC).")
    parser.add_argument("--port", type=int, default=9070)
    parser.add_argument("--airflow-uri", default="", help="airflow_uri given to new environments")
    parser.add_argument(
        "--environment",
        action="append",
        default=[],
        help="create projects/P/locations/L/environments/E[=gs://bucket/dags] at start (repeatable)",
    )
    parser.add_argument("--state-file", help="keep environments here across restarts")
    args = parser.parse_args()
    server = ComposerServer(args.port, args.airflow_uri)
    state = server.state
    keep_state(args.state_file, state.lock, state.saved, state.restore_saved)
    server.start()
    for spec in args.environment:
        server.add_environment(*spec.split("=", 1))
    print(f"composer api on {server.target}", flush=True)
    server.server.wait_for_termination()


if __name__ == "__main__":
    main()
