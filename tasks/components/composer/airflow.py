"""Airflow metadata (variables, connections, pools) through Airflow's stable REST API v1.

Plain httpx against the documented shapes (`/api/v1/variables`, `/connections`, `/pools`, paged
with `limit` / `offset`, basic auth). What the API does not give cannot be backed up: Airflow never
returns a connection's `password`, and it masks sensitive keys of a connection's `extra` as "***".
Exports record which connections were masked; a restore never writes "***" over a real value and
names the connections whose secrets must be entered again.

Also the Airflow-side checks of a DAG backup: every .py compiles, and (with a venv that has
Airflow) the dags/ folder loads in a DagBag in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from backstop.core.errors import (
    BackstopError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from backstop.core.manifest import ManifestEntry
from backstop.core.secretbox import Mode, SecretBox, protect_connection, protect_variable, reveal
from tasks.storage import scratch
from tasks.storage.bucket import BackupStore
from tasks.storage.parallel import parallel_map

KINDS = ("variables", "connections", "pools")
ID_FIELD = {"variables": "key", "connections": "connection_id", "pools": "name"}
WRITABLE = {
    "variables": ("key", "value", "description"),
    "connections": (
        "connection_id",
        "conn_type",
        "description",
        "host",
        "login",
        "schema",
        "port",
        "password",
        "extra",
    ),
    "pools": ("name", "slots", "description", "include_deferred"),
}
MASK = "***"
PAGE = 100
TRANSIENT = (502, 503, 504)


class AirflowApi:
    """A small client of one Airflow's REST API (`base_url` ends in /api/v1)."""

    def __init__(
        self, base_url: str, user: str, password: str, timeout: float = 30.0, auth_block: str = ""
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth_block = auth_block
        self.client = httpx.Client(base_url=self.base_url, auth=(user, password), timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        where = f"Airflow API {method} {self.base_url}{path}"
        for attempt in range(3):
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == 2:
                    raise Unavailable(f"{where}: no answer ({exc})") from exc
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status_code in TRANSIENT and attempt < 2:
                time.sleep(0.2 * (attempt + 1))
                continue
            break
        if response.status_code < 300:
            return response.json() if response.content else None
        detail = _detail(response)
        status = response.status_code
        if status in (401, 403):
            hint = f" (check the user:password in block {self.auth_block!r})" if self.auth_block else ""
            raise PermissionDenied(f"{where}: {status} {detail}{hint}")
        if status == 404:
            raise NotFound(f"{where}: 404 {detail}")
        if status == 409:
            raise Conflict(f"{where}: 409 {detail}")
        if status == 400:
            raise InvalidInput(f"{where}: 400 {detail}")
        raise Unavailable(f"{where}: {status} {detail}")

    # -- reads ---------------------------------------------------------------------------
    def list(self, kind: str) -> list[dict[str, Any]]:
        """Every item of `kind`, all pages; connections re-read one by one (listings omit `extra`)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/{kind}", params={"limit": PAGE, "offset": len(items)})
            items += page.get(kind, [])
            if not page.get(kind) or len(items) >= int(page.get("total_entries", 0)):
                break
        if kind == "connections":
            items = [self._call("GET", f"/connections/{c['connection_id']}") for c in items]
        return items

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call("GET", f"/{kind}/{name}")
        except NotFound:
            return None
        return found

    # -- writes --------------------------------------------------------------------------
    def create(self, kind: str, body: dict[str, Any]) -> None:
        self._call("POST", f"/{kind}", json=body)

    def update(self, kind: str, name: str, body: dict[str, Any]) -> None:
        mask = ",".join(k for k in body if k != ID_FIELD[kind])
        self._call("PATCH", f"/{kind}/{name}", params={"update_mask": mask}, json=body)

    def delete(self, kind: str, name: str) -> None:
        self._call("DELETE", f"/{kind}/{name}")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("title") or "") + (f": {body['detail']}" if body.get("detail") else "")
    except ValueError:
        return response.reason_phrase or response.text[:200]


def writable(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """The fields of an item that a create / update sends (no runtime counters)."""
    # Airflow rejects null for some fields (a variable's description): absent means "not set".
    return {f: item[f] for f in WRITABLE[kind] if item.get(f) is not None}


def masked_keys(extra: str | None) -> list[str]:
    """Keys of a connection's extra JSON that Airflow answered as "***"."""
    try:
        data = json.loads(extra or "{}")
    except ValueError:
        return []
    return sorted(k for k, v in data.items() if v == MASK) if isinstance(data, dict) else []


def without_masked(extra: str | None) -> str | None:
    """`extra` with the "***" keys left out (never write a mask over a real value)."""
    keys = masked_keys(extra)
    if not keys or extra is None:
        return extra
    data = {k: v for k, v in json.loads(extra).items() if k not in keys}
    return json.dumps(data) if data else None


def export_metadata(
    api: AirflowApi, patterns: list[str], mode: Mode, box: SecretBox | None, ref: str
) -> dict[str, dict[str, Any]]:
    """Variables, connections and pools, secrets protected: kind -> {"items", "count", "masked"}."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        items = [writable(kind, i) for i in api.list(kind)]
        masked: dict[str, list[str]] = {}
        if kind == "variables":
            items = [protect_variable(i, patterns, mode, box, ref) for i in items]
        elif kind == "connections":
            masked = {
                i["connection_id"]: masked_keys(i.get("extra")) for i in items if masked_keys(i.get("extra"))
            }
            items = [protect_connection(i, mode, box, ref) for i in items]
        out[kind] = {"items": items, "count": len(items), "masked": masked}
    return out


def import_items(
    api: AirflowApi,
    kind: str,
    items: list[dict[str, Any]],
    box: SecretBox | None,
    masked: dict[str, list[str]],
    dry_run: bool = False,
    exact: bool = False,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Create every missing item of `kind`, update changed ones only with `overwrite`, delete others
    (Airflow's default_pool excepted) only with `exact` and `overwrite`; return the actions (all of
    them, when dry_run)."""
    id_field = ID_FIELD[kind]
    current = {i[id_field]: i for i in api.list(kind)}
    actions: list[dict[str, Any]] = []
    for stored in items:
        name = str(stored[id_field])
        plain, unresolved = reveal(stored, box, f"{kind[:-1]} {name!r}")
        note = []
        if unresolved:
            note.append(f"{', '.join(unresolved)} held as reference(s): set by hand")
        if kind == "connections" and masked.get(name):
            note.append(f"extra keys {', '.join(masked[name])} were masked by Airflow: re-enter them")
            if name in current:
                plain.pop("extra", None)  # keep the target's real (unmasked) values
            else:
                plain["extra"] = without_masked(plain.get("extra"))
        there = current.get(name)
        if there is None:
            action = "create"
        elif all(there.get(k) == v for k, v in plain.items() if k != "password"):
            action = "unchanged"
        else:
            action = "update"
        if kind == "connections" and action == "create":
            note.append(
                "the Airflow API never returns passwords: set this connection's password if it needs one"
            )
        if not dry_run and action == "create":
            api.create(kind, plain)
        elif not dry_run and action == "update" and overwrite:
            api.update(kind, name, plain)
        actions.append({"kind": kind, "name": name, "action": action, "note": "; ".join(note)})
    if exact:
        keep = {str(i[id_field]) for i in items} | {"default_pool"}
        for name in sorted(set(current) - keep):
            if not dry_run and overwrite:
                api.delete(kind, name)
            actions.append({"kind": kind, "name": name, "action": "delete", "note": "not in the backup"})
    return actions


def safe_call(what: str, fn: Any, *args: Any) -> Any:
    """Run `fn`, re-raising any non-Backstop error as Unavailable naming `what`."""
    try:
        return fn(*args)
    except BackstopError:
        raise
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"{what}: {exc}") from exc


def compile_problem(name: str, source: bytes) -> str | None:
    """None when the Python file compiles, else 'name line N: message'."""
    try:
        compile(source, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"DAG file {name} line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # null bytes
        return f"DAG file {name}: {exc}"
    return None


# Runs in the Airflow venv: load the DAG folder as the scheduler would, report import errors.
DAGBAG_SCRIPT = """
import json, sys
from airflow.models.dagbag import DagBag
bag = DagBag(sys.argv[1], include_examples=False)
print(json.dumps({"dags": len(bag.dags), "errors": {k: str(v) for k, v in bag.import_errors.items()}}))
"""


def check_python_files(python: str | None, store: BackupStore, entries: list[ManifestEntry]) -> list[str]:
    """Every stored .py compiles; with `python` (of a venv with Airflow) the dags/ folder also loads in a DagBag."""
    files = [e for e in entries if e.name.endswith(".py")]
    sources = dict(
        zip(
            [e.name for e in files], parallel_map(lambda e: store.get_bytes(e.stored_key), files), strict=True
        )
    )
    problems = [p for p in (compile_problem(name, data) for name, data in sources.items()) if p]
    if problems or not python or not any(n.startswith("dags/") for n in sources):
        return problems
    with scratch.directory("backstop-dagbag-") as root:
        for entry in entries:  # every file: DAGs read SQL, templates and data next to them
            path = Path(root, entry.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sources.get(entry.name) or store.get_bytes(entry.stored_key))
        env = os.environ | {
            "AIRFLOW_HOME": str(Path(root, "_airflow_home")),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(root, "plugins")),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        }
        try:
            done = subprocess.run(
                [python, "-c", DAGBAG_SCRIPT, str(Path(root, "dags"))],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                cwd=root,
                check=False,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            return [f"could not load the DAGs with {python}: {exc}"]
    for path, error in sorted(result["errors"].items()):
        name = str(Path(path).relative_to(root)) if path.startswith(root) else path
        problems.append(f"DAG file {name} does not load in Airflow: {error.strip().splitlines()[-1]}")
    return problems
