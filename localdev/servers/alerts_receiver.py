"""A local alert receiver: the notification endpoint of the local platform.

`backstop up` runs it (service `alerts`); `backstop bootstrap` points a custom-webhook notification
block at it when no other channel is configured, so failure and staleness alerts have somewhere to go
out of the box. Every POST is appended to `<state_dir>/alerts.jsonl` (kept across restarts) and
`GET /messages` returns them; `backstop alerts` shows them.

    python -m localdev.servers.alerts_receiver --port 9095 --store .backstop/alerts.jsonl
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localdev.platform import EXTRA_SERVICES, LocalPlatform, Service, http_ok

# Where the webhook posts (the block's URL is the receiver's address plus this path).
HOOK_PATH = "/hook"
MAX_BODY = 1 << 20


def read_messages(store: Path) -> list[dict[str, Any]]:
    """The stored messages, oldest first (a damaged line is skipped, not fatal)."""
    if not store.exists():
        return []
    messages = []
    for line in store.read_text(errors="replace").splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue
    return messages


def make_server(port: int, store: Path) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw or b"{}")
            except ValueError:
                body = {"text": raw.decode(errors="replace")}
            if not isinstance(body, dict):
                body = {"text": json.dumps(body)}
            message = {
                "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "path": self.path,
                "subject": str(body.get("subject") or ""),
                "text": str(body.get("text") or body.get("body") or ""),
            }
            with lock, store.open("a") as out:
                out.write(json.dumps(message) + "\n")
            self._send(200, {"ok": True})

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._send(200, {"ok": True})
            elif self.path == "/messages":
                self._send(200, read_messages(store))
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, data: Any) -> None:
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def _service(platform: LocalPlatform) -> Service:
    import sys

    port = platform.ports["alerts"]
    store = platform.state_dir / "alerts.jsonl"
    return Service(
        "alerts",
        [
            sys.executable,
            "-m",
            "localdev.servers.alerts_receiver",
            "--port",
            str(port),
            "--store",
            str(store),
        ],
        lambda: http_ok(f"http://127.0.0.1:{port}/health"),
        endpoints={
            "BACKSTOP_ALERTS_URL": f"http://127.0.0.1:{port}",
            "BACKSTOP_ALERTS_HOOK_URL": f"http://127.0.0.1:{port}{HOOK_PATH}",
        },
        timeout=30.0,
    )


EXTRA_SERVICES["alerts"] = _service


def main() -> None:
    parser = argparse.ArgumentParser(description="Local alert receiver (stores every POSTed message).")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
    args.store.parent.mkdir(parents=True, exist_ok=True)
    server = make_server(args.port, args.store)
    print(f"alert receiver on http://127.0.0.1:{args.port}{HOOK_PATH}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
