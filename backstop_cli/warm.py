"""A warm `backstop`: commands start in milliseconds instead of a second and a half.

Every command that runs a flow imports Prefect (~1 s on its own) and a component's Google clients
before its first request. `backstop warm` is a process that has imported them once and forks a
child for each command, as Ruby's Spring, dmypy and the Gradle daemon do; `backstop up` starts one
beside the local platform. The `backstop` command finds it by its home (a socket named after it),
passes its arguments, working directory, environment and terminal (stdin, stdout and stderr as file
descriptors), and waits for the child's exit code; a signal the command gets (Ctrl-C) is passed on,
and a command that goes away (a closed terminal) hangs its child up. The child runs the command as
a cold `backstop` would, with the command's environment, and ends like it.

What keeps it safe:
- the socket is in a directory only this user can open, and the server answers only its own user;
- a server whose code changed since it started (Backstop's files, or an install into its Python
  environment) says so and starts again with the new code: the command runs cold meanwhile, never
  old code in an incident;
- the local platform's own verbs (`up`, `down`, `demo`, ...) and BACKSTOP_WARM=0 always run cold, and
  so does a command of another Python than the server's.

This module imports only the standard library: the command's side runs before anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from backstop_cli.home import state_dir
from backstop_cli.words import verb, verb_and_component

COLD_VERBS = frozenset({"setup", "up", "down", "status", "demo", "warm"})  # verbs that run cold
RESTART = -1  # what `serve` returns when the code changed: the server starts again with it
HANDSHAKE_SECONDS = 10  # a server that does not say it started the command by then is stuck
PASSED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
PACKAGES = ("backstop", "backstop_cli", "flows", "tasks", "blocks", "deployments", "localdev")
# Imported once by the server: what a command spends its start on (the CLI, Prefect and the flows,
# every component's clients). A module that is not installed (localdev in production) is skipped.
PRELOAD = (
    "backstop_cli.main",
    "backstop_cli.commands.components",
    "backstop_cli.commands.core",
    "backstop_cli.commands.ops",
    "backstop_cli.commands.recover",
    "backstop_cli.commands.retention",
    "backstop_cli.commands.settings",
    "backstop_cli.prefect_logging",
    "prefect",
    "prefect.flow_engine",  # imported by a flow's first call, a task's, and a flow run's graph
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "flows.components",
    "flows.recover",
    "flows.drill",
    "flows.health",
    "flows.retention",
)


def socket_path(home: Path) -> Path:
    """The server's socket for `home`: in a folder of this user's only (a path short enough for a
    Unix socket whatever the home's length)."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"backstop-{os.getuid()}"
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:20]
    return base / f"{digest}.sock"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} is not a folder of this user's only: the warm server will not use it")
    return path


def _send(conn: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data], list(fds))
    else:
        conn.sendall(data)


def _messages(conn: socket.socket) -> Iterator[dict[str, Any]]:
    """The newline-ended JSON messages from `conn` until it closes."""
    stream = conn.makefile("rb")
    for line in stream:
        yield json.loads(line)


# -- the command's side -----------------------------------------------------------------------


def run_warm(argv: Sequence[str]) -> int | None:
    """Run the command in the warm server of this home: its exit code, or None when it is to run cold
    (no server, BACKSTOP_WARM=0, a verb of the platform itself, another Python, the server's code
    changed)."""
    if os.environ.get("BACKSTOP_WARM", "1") == "0" or verb(argv) in (*COLD_VERBS, None):
        return None
    try:
        path, cwd = socket_path(state_dir()), os.getcwd()
    except OSError:  # a folder that was deleted under the shell: the cold command says so
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:  # none running (no socket, or one left by a server that died)
        conn.close()
        return None
    with conn:
        request = {"argv": list(argv), "cwd": cwd, "env": dict(os.environ), "python": _python()}
        try:
            _send(conn, request, fds=(0, 1, 2))
        except OSError:  # a closed stdin, say: nothing to hand over
            return None
        conn.settimeout(HANDSHAKE_SECONDS)
        replies = _messages(conn)
        try:
            first = next(replies, None)
        except TimeoutError:  # it may yet run the command: running it cold as well could run it twice
            print(f"error: the warm backstop process at {path} does not answer: stop it (`backstop down`), or "
                  "run the command with BACKSTOP_WARM=0", file=sys.stderr)  # fmt: skip
            return 1
        if not first or "pid" not in first:  # stale, another Python, or it stopped: it did not start
            return None
        conn.settimeout(None)
        # A signal this process ignores (started by `nohup`, or in the background of a script) is
        # ignored as a cold command would: not passed on.
        passed = [sig for sig in PASSED_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]
        previous = {sig: signal.signal(sig, lambda sig, _: _pass_on(conn, sig)) for sig in passed}
        try:
            for reply in replies:
                if "exit" in reply:
                    return int(reply["exit"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print(f"error: the warm backstop process running this command ended without an exit code (pid {first['pid']})",
          file=sys.stderr)  # fmt: skip
    return 1


def _python() -> str:
    """The Python a process runs in: its environment's folder, its version and the PYTHONPATH it
    was started with (the server's modules are imported from its own sys.path)."""
    return f"{sys.prefix} {sys.version} {os.environ.get('PYTHONPATH', '')}"


def _pass_on(conn: socket.socket, sig: int) -> None:
    with contextlib.suppress(OSError):
        _send(conn, {"signal": int(sig)})


def supported() -> bool:
    """Whether this system has what the server needs: the peer's uid and descriptor passing."""
    return hasattr(socket, "SO_PEERCRED") and hasattr(socket, "send_fds") and hasattr(os, "fork")


def ping(path: Path) -> bool:
    """Whether a warm server answers on `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(path))
            _send(conn, {"ping": True})
            return "pong" in next(_messages(conn), {})
    except (OSError, ValueError):
        return False


# -- the server -------------------------------------------------------------------------------


def code_fingerprint() -> str:
    """What changes when Backstop's code or its Python environment does: every source file of the
    project's packages (path, size, time) and the environment's site-packages (an install touches it)."""
    import sysconfig

    digest = hashlib.sha256(_python().encode())
    for folder in sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}):
        with contextlib.suppress(OSError):
            digest.update(f"{folder}:{os.stat(folder).st_mtime_ns}".encode())
    for name in PACKAGES:
        module = sys.modules.get(name)
        for folder in getattr(module, "__path__", ()):
            for root, dirs, files in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for file in sorted(f for f in files if f.endswith(".py")):
                    info = os.stat(os.path.join(root, file))
                    digest.update(f"{root}/{file}:{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("localdev"):
                raise
    from blocks.clients import LIBRARIES
    from tasks.engine.protocol import COMPONENTS, get_component

    for name in LIBRARIES:  # the Google clients' libraries, which the components import when used
        importlib.import_module(name)

    for name in COMPONENTS:  # every component's module, its clients and its options model
        get_component(name)
    for name in PACKAGES:  # for the fingerprint
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(name)


class Command:
    """A command the server forked for: in the child, its connection, request and terminal."""

    def __init__(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        self.conn, self.request, self.fds = conn, request, fds


def serve(home: Path) -> int | Command:
    """Serve the commands of `home` until stopped (SIGTERM, Ctrl-C) or until the code changes: the
    server's exit code (RESTART: start again); in a child forked for a command, that Command (run
    it with `run_command`, at the top of the stack: the child ends as a cold command's process does)."""
    from backstop_cli import ending
    from backstop_cli.main import prefect_defaults

    if not supported():
        print(
            "backstop warm: needs Linux (SO_PEERCRED and descriptor passing): commands run cold", flush=True
        )
        return 2
    path = socket_path(home)
    _private_dir(path.parent)
    if ping(path):
        print(f"backstop warm: another one already serves {home} on {path}", flush=True)
        return 1
    os.environ["BACKSTOP_HOME"] = str(home)  # the server's own Prefect home; commands bring theirs
    # A process that forks must not run other threads: no BLAS thread pool (numpy), no jemalloc
    # background thread (pyarrow; its default pool is mimalloc anyway).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
    prefect_defaults()
    ending.install_exit()  # first of the exit handlers, so that in each child it runs last
    ending.set_code(0)
    _preload()
    import gc

    gc.freeze()  # children share the imported modules' pages instead of copying them on first touch
    fingerprint = code_fingerprint()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a server that died
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    server, inode = os.getpid(), path.stat().st_ino
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the system
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"backstop warm: serving {home} on {path} (pid {server})", flush=True)
    threads = _threads()
    if threads > 1:  # forking now could deadlock a child on a lock another thread holds
        print(f"backstop warm: {threads} threads run in this process: forks may be unsafe", flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            outcome = _serve_one(listener, conn, fingerprint)
            if outcome is None:
                print("backstop warm: Backstop's code or its environment changed: starting again", flush=True)
                return RESTART
            if isinstance(outcome, Command):
                return outcome
    except KeyboardInterrupt:
        return 0
    finally:
        if os.getpid() == server:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_ino == inode:  # not a newer server's socket
                    path.unlink()


def _serve_one(listener: socket.socket, conn: socket.socket, fingerprint: str) -> bool | Command | None:
    """Fork a child for the command on `conn`: True in the server, the Command in the child; None
    when the code changed (the server starts again)."""
    fds: list[int] = []
    forked = False
    try:
        conn.settimeout(10)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while data and not data.endswith(b"\n"):
            more = conn.recv(1 << 20)
            if not more:
                raise ConnectionError("the command closed the connection before its request ended")
            data += more
        request = json.loads(data)
        conn.settimeout(None)
        if request.get("ping"):
            _send(conn, {"pong": os.getpid()})
            return True
        if _peer_uid(conn) != os.getuid() or len(fds) != 3:
            _send(conn, {"refused": "another user's command, or no terminal given"})
            return True
        if request.get("python") != _python():
            _send(conn, {"refused": f"this server runs {_python()}"})
            return True
        if code_fingerprint() != fingerprint:
            _send(conn, {"stale": "Backstop's code or its environment changed since this server started"})
            return None
        pid = os.fork()
        if pid == 0:
            listener.close()
            forked = True
            return Command(conn, request, fds)
        print(f"backstop warm: pid {pid} runs backstop {verb_and_component(request['argv'])}", flush=True)
        return True
    except (OSError, ValueError) as exc:
        print(f"backstop warm: a command's request failed: {exc}", flush=True)
        return True
    finally:
        if not forked:  # the server's copies (a child keeps its own in its Command)
            for fd in fds:
                os.close(fd)
            conn.close()


def _threads() -> int:
    """Threads of this process, Python's and native ones (Linux)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def run_command(command: Command) -> None:
    """In the child: take the command's terminal, folder and environment and run it as `backstop`
    would; the process ends as a cold command's does, and its exit code goes to the command after
    every exit handler has run (Prefect sending its events and logs)."""
    from backstop_cli import ending

    ending.set_code(1)  # until the command returns (the server's own code was 0)
    conn, request = command.conn, command.request
    os.setpgid(0, 0)  # a group of its own: stopping the server (`backstop down`) lets running commands end
    # The signals the command passes on do what they do in a cold command started from a terminal,
    # whatever the server inherited: a server started with Ctrl-C ignored (`nohup`, the background
    # of a script) would otherwise hand that to every child, and Ctrl-C would never end a command.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    for target, fd in enumerate(command.fds):
        os.dup2(fd, target)
        os.close(fd)
    _reopen_std_streams()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    argv = list(request["argv"])
    sys.argv = ["backstop", *argv]
    done = threading.Event()

    def report(code: int) -> None:
        done.set()
        _send(conn, {"exit": code})

    ending.set_reporter(report)
    _send(conn, {"pid": os.getpid()})
    threading.Thread(target=_signals_from, args=(conn, done), daemon=True).start()
    _settings_from_environment(argv)
    ending.run_main(argv)  # raises SystemExit


def _reopen_std_streams() -> None:
    """stdin, stdout and stderr on the command's descriptors, buffered as Python buffers a terminal or
    a pipe."""
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False,  # noqa: SIM115
                      buffering=1 if fd == 2 or os.isatty(fd) else -1)  # fmt: skip
        setattr(sys, name, stream)


def _settings_from_environment(argv: Sequence[str]) -> None:
    """What a cold command sets before Prefect is imported, then Prefect's settings and logging read
    again from this command's environment."""
    from prefect.context import refresh_global_settings_context

    from backstop_cli.main import load_platform_env, quiet_prefect_console
    from backstop_cli.prefect_logging import setup_logging

    quiet_prefect_console(argv)
    load_platform_env(fresh=True)
    refresh_global_settings_context()
    setup_logging()


def _signals_from(conn: socket.socket, done: threading.Event) -> None:
    """Raise in this process's main thread the signals the command passes on; the command gone
    (before the exit code was sent) is a hang-up. Sent to the main thread itself, where Python runs
    its handlers: `os.kill` of its own process lets the kernel hand the signal to any thread."""
    main = threading.main_thread().ident
    assert main is not None
    with contextlib.suppress(OSError, ValueError):
        for message in _messages(conn):
            if "signal" in message:
                signal.pthread_kill(main, int(message["signal"]))
    if not done.is_set():
        signal.pthread_kill(main, signal.SIGHUP)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backstop warm", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="the platform home whose commands it serves (default: as `backstop`)")
    args = parser.parse_args(argv)
    home = Path(args.home).resolve() if args.home else state_dir()
    outcome = serve(home)
    if isinstance(outcome, Command):
        run_command(outcome)
    if outcome == RESTART:  # the same process (pid), with the code as it is now
        os.execv(sys.executable, [sys.executable, "-m", "backstop_cli.warm", "--home", str(home)])
    return int(outcome) if isinstance(outcome, int) else 1


if __name__ == "__main__":
    sys.exit(main())
