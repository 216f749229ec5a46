"""A local Airflow stable REST API (v1) server: variables, connections and pools.

It answers as Apache Airflow 2.10's webserver does (shapes checked against a real 2.10.5 on
SQLite): basic auth, `limit` / `offset` pagination with `total_entries`, problem+json error bodies
(`detail`, `status`, `title`, `type`), 409 on a duplicate connection or pool, a POST of an existing
variable updates it, connection `password` is write-only, sensitive keys of a connection's `extra`
come back as "***", and `default_pool` always exists and cannot be deleted.

    python -m localdev.servers.airflow_server --port 8080 --user admin --password admin

`AirflowServer(...).start()` runs it in a thread (tests); `fail_next(status)` makes the next API call
answer with that status (fault injection).
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from localdev.platform import EXTRA_SERVICES, LocalPlatform, Service, free_port, http_ok
from localdev.servers.kept_state import keep_state

DOCS = "https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html#section/Errors/"
MAX_LIMIT = 100
# Airflow's DEFAULT_SENSITIVE_FIELDS: a key containing one of these is masked in API answers.
SENSITIVE = (
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
)
CONNECTION_FIELDS = ("connection_id", "conn_type", "description", "host", "login", "schema", "port")
KINDS = {"variables": "key", "connections": "connection_id", "pools": "name"}
TITLES = {"variables": "Variable", "connections": "Connection", "pools": "Pool"}


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str | None, kind: str) -> None:
        super().__init__(detail)
        self.body: dict[str, Any] = {"detail": detail, "status": status, "title": title, "type": DOCS + kind}


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if any(s in k.lower() for s in SENSITIVE) else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _masked_extra(extra: str | None) -> str | None:
    if not extra:
        return extra
    try:
        return json.dumps(_mask(json.loads(extra)))
    except ValueError:
        return extra


class AirflowState:
    """The metadata one Airflow holds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, dict[str, dict[str, Any]]] = {
            "variables": {},
            "connections": {},
            "pools": {
                "default_pool": {
                    "name": "default_pool",
                    "slots": 128,
                    "description": "Default pool",
                    "include_deferred": False,
                }
            },
        }

    def view(self, kind: str, item: dict[str, Any], listing: bool = False) -> dict[str, Any]:
        if kind == "variables":
            return {"key": item["key"], "value": item["value"], "description": item.get("description")}
        if kind == "connections":
            out = {f: item.get(f) for f in CONNECTION_FIELDS}
            if not listing:
                out["extra"] = _masked_extra(item.get("extra"))
            return out
        slots = int(item["slots"])
        zero = dict.fromkeys(
            ("occupied_slots", "running_slots", "queued_slots", "scheduled_slots", "deferred_slots"), 0
        )
        return {
            "name": item["name"],
            "slots": slots,
            "description": item.get("description"),
            "include_deferred": bool(item.get("include_deferred", False)),
            "open_slots": slots,
            **zero,
        }

    def write(self, kind: str, body: dict[str, Any], name: str | None, create: bool) -> dict[str, Any]:
        key_field = KINDS[kind]
        required = {
            "variables": ("key", "value"),
            "connections": ("connection_id", "conn_type"),
            "pools": ("name", "slots"),
        }[kind]
        title = TITLES[kind]
        store = self.items[kind]
        with self.lock:
            if create:
                missing = [f for f in required if body.get(f) is None]
                if missing:
                    detail = str({f: ["Missing data for required field."] for f in missing})
                    raise ApiError(400, f"Invalid {title} schema", detail, "BadRequest")
                if kind == "variables" and "description" in body and body["description"] is None:
                    detail = str({"description": ["Field may not be null."]})
                    raise ApiError(400, "Invalid Variable schema", detail, "BadRequest")
                name = str(body[key_field])
                if name in store and kind != "variables":
                    detail = (
                        f"Connection already exist. ID: {name}"
                        if kind == "connections"
                        else f"Pool: {name} already exists"
                    )
                    raise ApiError(409, "Conflict", detail, "AlreadyExists")
            else:
                if name not in store:
                    raise ApiError(
                        404,
                        f"{title} not found",
                        f"{title} does not exist"
                        if kind == "variables"
                        else f"The {title} with {key_field}: `{name}` was not found",
                        "NotFound",
                    )
                if body.get(key_field) not in (None, name):
                    raise ApiError(
                        400,
                        "Invalid post body",
                        f"{key_field} from request body doesn't match uri parameter",
                        "BadRequest",
                    )
            assert name is not None
            item = dict(store.get(name, {}))
            item.update(
                {
                    k: v
                    for k, v in body.items()
                    if k
                    in (*required, "description", "extra", "password", "include_deferred", *CONNECTION_FIELDS)
                }
            )
            item[key_field] = name
            store[name] = item
            return self.view(kind, item)

    def delete(self, kind: str, name: str) -> None:
        with self.lock:
            if kind == "pools" and name == "default_pool":
                raise ApiError(400, "Bad Request", "Default Pool can't be deleted", "BadRequest")
            if name not in self.items[kind]:
                raise ApiError(404, f"{TITLES[kind]} not found", f"{TITLES[kind]} does not exist", "NotFound")
            del self.items[kind][name]


class AirflowHandler(BaseHTTPRequestHandler):
    """The Airflow stable REST API of one local Airflow server (`airflow`, set per server)."""

    airflow: Any

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body, indent=2).encode() + b"\n" if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if parts == ["health"] or parts == ["api", "v1", "health"]:
                return self._send(200, {"metadatabase": {"status": "healthy"}})
            if parts[:2] != ["api", "v1"] or len(parts) not in (3, 4) or parts[2] not in KINDS:
                raise ApiError(404, "Not Found", "The requested URL was not found on the server.", "NotFound")
            if self.headers.get("Authorization") != f"Basic {self.airflow.credentials}":
                raise ApiError(401, "Unauthorized", None, "Unauthenticated")
            if self.airflow._fail:
                status = self.airflow._fail.pop(0)
                raise ApiError(
                    status,
                    "Internal Server Error" if status >= 500 else "Error",
                    "injected failure",
                    "Unknown",
                )
            self._dispatch(method, parts[2], parts[3] if len(parts) == 4 else None, parse_qs(url.query))
        except ApiError as exc:
            self._send(int(exc.body["status"]), exc.body, "application/problem+json")

    def _dispatch(self, method: str, kind: str, name: str | None, query: dict[str, list[str]]) -> None:
        state = self.airflow.state
        if method == "GET" and name is None:
            limit = min(int(query.get("limit", ["100"])[0]), MAX_LIMIT)
            offset = int(query.get("offset", ["0"])[0])
            with state.lock:
                items = [state.items[kind][k] for k in sorted(state.items[kind])]
            page = [state.view(kind, i, listing=True) for i in items[offset : offset + limit]]
            return self._send(200, {kind: page, "total_entries": len(items)})
        if method == "GET":
            item = state.items[kind].get(str(name))
            if item is None:
                raise ApiError(404, f"{TITLES[kind]} not found", f"{TITLES[kind]} does not exist", "NotFound")
            return self._send(200, state.view(kind, item))
        if method == "DELETE" and name is not None:
            state.delete(kind, name)
            return self._send(204, None)
        if method in ("POST", "PATCH") and (name is None) == (method == "POST"):
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError as exc:
                raise ApiError(400, "Bad Request", f"invalid JSON: {exc}", "BadRequest") from None
            mask = query.get("update_mask", [""])[0]
            if mask:
                body = {k: v for k, v in body.items() if k in mask.split(",") or k == KINDS[kind]}
            return self._send(200, state.write(kind, body, name, create=method == "POST"))
        raise ApiError(405, "Method Not Allowed", f"{method} not allowed here", "MethodNotAllowed")

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


class AirflowServer:
    """One local Airflow API on 127.0.0.1:`port`."""

    def __init__(self, port: int = 0, user: str = "admin", password: str = "admin") -> None:
        self.state = AirflowState()
        self.credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._fail: list[int] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/api/v1"

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` API calls with `status` (fault injection)."""
        self._fail.extend([status] * times)

    def start(self) -> AirflowServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (AirflowHandler,), {"airflow": self})


def _service(platform: LocalPlatform) -> Service:
    port = platform.ports.setdefault("airflow", free_port())
    import sys

    kept = ["--state-file", str(platform.state_dir / "airflow.state")] if platform.persistent else []
    return Service(
        "airflow",
        [sys.executable, "-m", "localdev.servers.airflow_server", "--port", str(port), *kept],
        lambda: http_ok(f"http://127.0.0.1:{port}/health"),
        endpoints={"AIRFLOW_API_URL": f"http://127.0.0.1:{port}/api/v1"},
        timeout=30.0,
    )


EXTRA_SERVICES["airflow"] = _service


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Local Airflow stable REST API (variables, connections, pools)."
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--state-file", help="keep variables, connections and pools here across restarts")
    args = parser.parse_args()
    server = AirflowServer(args.port, args.user, args.password)
    state = server.state
    keep_state(args.state_file, state.lock, lambda: state.items, state.items.update)
    print(f"airflow api on {server.url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
