"""Benchmark: a command's start, from the `backstop` process starting to its first request to Prefect.

    python -m bench.bench_start [--repeats 5]

`backstop list` against a Prefect API address where this bench listens and never answers: the time
from starting the process to its first HTTP request there (the settings block's read), with the warm
process `backstop up` starts (backstop_cli/warm.py) and cold (BACKSTOP_WARM=0), alternating. The
first TCP connections are the command's check that Prefect is reachable; the request comes after
the command has imported what it needs. No platform is started: nothing here is timed but start-up.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backstop_cli import warm

BACKSTOP = str(Path(sys.executable).parent / "backstop")
CHECKOUT = Path(__file__).parent.parent


def first_request(env: dict[str, str]) -> tuple[float, float]:
    """Seconds from starting `backstop list` to its first TCP connection and to its first request."""
    listener = socket.create_server(("127.0.0.1", 0))
    env = env | {"PREFECT_API_URL": f"http://127.0.0.1:{listener.getsockname()[1]}/api"}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    held: list[socket.socket] = []
    start = time.monotonic()
    command = subprocess.Popen(
        [BACKSTOP, "list"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    connected = None
    try:
        while True:
            events = selector.select(timeout=60)
            if not events:
                raise TimeoutError("backstop list sent no request within 60 s")
            for key, _ in events:
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    held.append(conn)
                    selector.register(conn, selectors.EVENT_READ)
                    connected = connected or time.monotonic()
                    continue
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                selector.unregister(conn)
                if conn.recv(4096):
                    return (connected or start) - start, time.monotonic() - start
    finally:
        command.kill()
        command.wait()
        for conn in held:
            conn.close()
        listener.close()


def run(repeats: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-start-")) / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BACKSTOP_"))}
    env |= {"BACKSTOP_HOME": str(home), "DO_NOT_TRACK": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "backstop_cli.warm", "--home", str(home)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=CHECKOUT,
    )  # fmt: skip
    try:
        while not warm.ping(warm.socket_path(home)):
            if server.poll() is not None:
                raise RuntimeError("backstop warm did not start")
            time.sleep(0.2)
        times: dict[str, list[tuple[float, float]]] = {"warm": [], "cold": []}
        for _ in range(repeats):
            for mode in times:
                times[mode].append(first_request(env | ({"BACKSTOP_WARM": "0"} if mode == "cold" else {})))
    finally:
        server.terminate()
        server.wait(30)
    rows = [
        {
            "command": f"backstop list, {mode}",
            "first_connection_s": round(min(c for c, _ in runs), 3),
            "first_request_s_best": round(min(r for _, r in runs), 3),
            "first_request_s_median": round(statistics.median(r for _, r in runs), 3),
            "runs_s": ", ".join(f"{r:.2f}" for _, r in runs),
        }
        for mode, runs in times.items()
    ]
    return {
        "title": "A command's start: process start to its first request to Prefect",
        "tables": [{"title": f"backstop list, best and median of {repeats}", "rows": rows}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from bench.results import section

    print(section(run(args.repeats)))


if __name__ == "__main__":
    main()
