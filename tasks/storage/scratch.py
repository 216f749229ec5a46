"""This process's folder for large temporary files (BigQuery's Parquet and Avro parts, the configs
and DAGs staged for a check): `<temp dir>/backstop-scratch-<host>-<pid>-<random>`.

Each use takes a temporary directory inside it (`directory`) and removes it when done; the folder
goes when its process exits. What a process killed outright leaves (SIGKILL, the kernel's
out-of-memory killer: no code of it runs) is removed by the next process that makes its folder: the
folders of this host whose process no longer runs. Another host's folders (a temp dir shared between
containers) and another user's are left alone.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import tempfile
import threading

PREFIX = "backstop-scratch-"

_lock = threading.Lock()
_folder: tuple[int, str] | None = None  # (pid, path): a forked child makes its own


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep(base: str | None = None) -> list[str]:
    """Remove the scratch folders of this host whose process no longer runs; the folders removed."""
    removed = []
    own = f"{PREFIX}{_host()}-"
    for path in glob.glob(os.path.join(base or tempfile.gettempdir(), f"{own}*")):
        pid = os.path.basename(path)[len(own) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def folder() -> str:
    """This process's scratch folder, made (after a sweep) on first use."""
    global _folder
    with _lock:
        if _folder is None or _folder[0] != os.getpid() or not os.path.isdir(_folder[1]):
            sweep()
            path = tempfile.mkdtemp(prefix=f"{PREFIX}{_host()}-{os.getpid()}-")
            _folder = (os.getpid(), path)
            atexit.register(_remove, os.getpid(), path)
        return _folder[1]


def directory(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory in this process's scratch folder (removed when the `with` ends)."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=folder())


def _remove(pid: int, path: str) -> None:
    """At a normal exit, the folder goes with its process (not with a forked child's exit)."""
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)
