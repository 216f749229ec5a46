"""`backstop warm`: a command run in the warm process says and exits exactly as a cold one; Ctrl-C on
the command reaches its child; a server whose code changed stops and the command runs cold.

The server runs as `backstop up` starts it (`python -m backstop_cli.warm --home H`) for its own home;
the commands are the real `backstop` script. No platform is needed: the commands here fail for it
(no Prefect server), or hang on one that never answers. Commands through a running platform go warm
in tests/cli/test_platform_cli.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop_cli import warm
from localdev.platform import EMULATOR_ENV, free_port

pytestmark = pytest.mark.integration

BACKSTOP = str(Path(sys.executable).with_name("backstop"))
CHECKOUT = Path(__file__).parents[2]


@pytest.fixture
def shell(tmp_path: Path) -> dict[str, str]:
    """A user's shell whose Prefect server is at a free port where nothing answers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "BACKSTOP_", "BQEMU_")) and k not in EMULATOR_ENV
    }
    return env | {
        "BACKSTOP_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
    }


class Server:
    def __init__(self, home: Path, env: dict[str, str], **popen: Any) -> None:
        self.home, self.log = home, home.parent / "warm.log"
        command = [sys.executable, "-m", "backstop_cli.warm", "--home", str(home)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=CHECKOUT, **popen
            )
        wait_serving(self, 1)

    def children(self) -> list[int]:
        """The pids of the commands it forked, from its log."""
        return [
            int(line.split()[3]) for line in self.log.read_text().splitlines() if " runs backstop " in line
        ]


@contextlib.contextmanager
def serving(shell: dict[str, str], **popen: Any) -> Iterator[Server]:
    """A warm server for the shell's home, stopped at the end."""
    home = Path(shell["BACKSTOP_HOME"])
    home.mkdir()
    running = Server(home, shell, **popen)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.terminate()
            running.process.wait(30)


@pytest.fixture
def server(shell: dict[str, str]) -> Iterator[Server]:
    with serving(shell) as running:
        yield running


def run(env: dict[str, str], *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKSTOP, *argv], env=env, capture_output=True, text=True, timeout=120, cwd=CHECKOUT, **kwargs
    )


def test_a_warm_command_says_and_exits_as_a_cold_one(shell: dict[str, str], server: Server) -> None:
    commands = [
        ("list",),  # needs Prefect: one error line, exit 2
        ("restore", "gcs", "--bucket", "b", "--bucjet", "c"),  # a mistyped flag, with the suggestion
        ("backup", "nope"),  # an unknown component
        ("list", "--help"),  # argparse's own exit
    ]
    for argv in commands:
        warm_run = run(shell, *argv)
        cold_run = run(shell | {"BACKSTOP_WARM": "0"}, *argv)
        assert (warm_run.returncode, warm_run.stdout, warm_run.stderr) == (
            cold_run.returncode,
            cold_run.stdout,
            cold_run.stderr,
        ), argv
    assert warm_run.returncode == 0 and "--restore-points" in warm_run.stdout
    assert run(shell, "list").stderr.startswith("error: Prefect server not reachable")
    # each command but the cold ones ran in a child of the server; its log names no option's value
    log = server.log.read_text()
    assert len(server.children()) == len(commands) + 1, log
    # it forks with no other thread running (one holding a lock would deadlock a child)
    assert "threads run in this process" not in log and "multi-threaded" not in log, log
    assert (
        "runs backstop restore gcs\n" in log and "--bucket" not in log and "runs backstop backup nope" in log
    )
    # a second server for the same home says so and leaves the first one serving
    second = subprocess.run(
        [sys.executable, "-m", "backstop_cli.warm", "--home", str(server.home)],
        env=shell, capture_output=True, text=True, timeout=120, cwd=CHECKOUT,
    )  # fmt: skip
    assert second.returncode == 1 and "another one already serves" in second.stdout
    assert run(shell, "list").returncode == 2 and len(server.children()) == len(commands) + 2


def _ignoring_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("signum", "code", "says"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_or_kill_on_a_warm_command_ends_its_child(
    shell: dict[str, str], signum: int, code: int, says: str
) -> None:
    """A Prefect server that accepts connections and never answers: the command hangs in its
    child until Ctrl-C (or `kill`), which the command passes on; the child unwinds and ends as a
    cold command would (SIGTERM too: its finally blocks run).

    The server is started with Ctrl-C ignored, as `nohup backstop up` or the background of a script
    starts it (and as CI started this test: its children ignored SIGINT and the command hung); the
    command is started as from a terminal."""
    with serving(shell, preexec_fn=_ignoring_ctrl_c) as server:
        _interrupt_a_hanging_command(shell, server, signum, code, says)


def _interrupt_a_hanging_command(
    shell: dict[str, str], server: Server, signum: int, code: int, says: str
) -> None:
    hanging = socket.create_server(("127.0.0.1", 0))
    env = shell | {"PREFECT_API_URL": f"http://127.0.0.1:{hanging.getsockname()[1]}/api"}
    with hanging:
        command = subprocess.Popen(
            [BACKSTOP, "list"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=CHECKOUT,
            preexec_fn=_from_a_terminal,
        )
        hanging.settimeout(60)
        held = [
            hanging.accept()[0] for _ in range(2)
        ]  # the command's reachability check, then Prefect's client
        child = server.children()[-1]
        command.send_signal(signum)
        out, err = command.communicate(timeout=60)
        for conn in held:
            conn.close()
    assert command.returncode == code and err.strip().endswith(says), (command.returncode, out, err)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), f"the command's child {child} still runs"
    assert server.process.poll() is None  # the server goes on serving
    assert run(shell, "list").returncode == 2 and len(server.children()) == 2


def test_a_server_whose_code_changed_starts_again_with_it_and_the_command_runs_cold(
    shell: dict[str, str], server: Server
) -> None:
    assert run(shell, "list").returncode == 2 and len(server.children()) == 1
    source = CHECKOUT / "backstop_cli" / "home.py"
    before = source.stat()
    try:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # an edit
        done = run(shell, "list")
        assert done.returncode == 2 and done.stderr.startswith("error: Prefect server not reachable")
        assert len(server.children()) == 1  # it ran cold
        assert "changed: starting again" in server.log.read_text()
        wait_serving(server, 2)  # the same process, started again with the code as it is now
        assert run(shell, "list").returncode == 2 and len(server.children()) == 2
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert server.process.poll() is None


def wait_serving(server: Server, times: int) -> None:
    """Until the server's log says it serves for the `times`-th time and it answers."""
    deadline = time.monotonic() + 90
    while server.log.read_text().count("serving ") < times or not warm.ping(warm.socket_path(server.home)):
        assert server.process.poll() is None and time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.2)


def test_a_command_with_another_python_path_runs_cold(
    shell: dict[str, str], server: Server, tmp_path: Path
) -> None:
    """The server's modules come from its own sys.path: a command whose PYTHONPATH differs (another
    checkout first, say) is not run there."""
    elsewhere = run(shell | {"PYTHONPATH": str(tmp_path)}, "list")
    assert elsewhere.stderr.startswith("error: Prefect server not reachable") and server.children() == []
    assert run(shell, "list").returncode == 2 and len(server.children()) == 1


def test_a_command_in_a_deleted_folder_is_one_error_line(
    shell: dict[str, str], server: Server, tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run(
        ["bash", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "{BACKSTOP}" list'],
        env=shell, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        done.returncode == 2
        and done.stderr == "error: the current folder no longer exists: cd to one that does\n"
    )
    assert server.children() == []


def test_the_server_has_imported_what_every_google_client_needs() -> None:
    """Building any component's Google client in a command imports no more modules (each would
    be imported anew in every command's child: google.cloud.bigquery and pandas took 0.25 s)."""
    script = """
import sys
from backstop_cli import warm
warm._preload()
before = set(sys.modules)
from blocks import clients
clients.storage_client("p")
clients.bigquery_client("p")
clients.bigquery_read_client()
clients.gke_backup_client()
clients.composer_client()
# grpc._interceptor: imported by a channel when made (one small module)
print(sorted(set(sys.modules) - before - {"grpc._interceptor"}))
"""
    env = {k: v for k, v in os.environ.items() if k not in EMULATOR_ENV} | {
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9",
        "BIGQUERY_STORAGE_EMULATOR_HOST": "127.0.0.1:9",
        "GKE_BACKUP_EMULATOR_HOST": "127.0.0.1:9",
        "COMPOSER_EMULATOR_HOST": "127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=CHECKOUT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
