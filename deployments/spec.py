"""The deployment spec (prefect.yaml) and `prefect deploy`: which deployments it holds, per component
and kind, which of them can be deployed (their entrypoint file exists), and running
`prefect --no-prompt deploy` on them (deployments/bootstrap.py's `deploy`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from backstop.core.errors import Unavailable

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"
DEPLOYED_LINE = "View Deployment in UI"  # what `prefect deploy` prints once per deployment made


def load_spec(path: Path = PREFECT_YAML) -> dict[str, Any]:
    """The parsed prefect.yaml."""
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    return spec


def deployments_by_component(spec: dict[str, Any], prefix: str) -> dict[str, list[str]]:
    """Names of the deployments whose flow function starts with `prefix`, per component module."""
    found: dict[str, list[str]] = {}
    for deployment in spec.get("deployments", []):
        module, function = deployment["entrypoint"].split(":")
        if function.startswith(prefix):
            found.setdefault(Path(module).stem, []).append(deployment["name"])
    return found


def validation_deployments(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Validation deployment names per component ('gcs' -> ['gcs-validate']) from the spec."""
    return deployments_by_component(spec, "validate_")


def validations_by_part(
    spec: dict[str, Any], parts_of: Callable[[str], Sequence[str]]
) -> dict[str, dict[tuple[str, ...], list[str]]]:
    """Per component, the parts each validation deployment follows backups of -> those deployments
    ('composer' -> {('dags', 'config'): ['composer-dags-validate'], ('metadata',): [...]}; a component
    without parts: {(): [its validation deployments]}). A validation follows the backup deployments its
    triggers name; a backup deployment holds the parts its `options.parts` names, else every part."""
    by_name = {d["name"]: d for d in spec.get("deployments", [])}
    found: dict[str, dict[tuple[str, ...], list[str]]] = {}
    for component, names in validation_deployments(spec).items():
        every = tuple(parts_of(component))
        for name in names:
            held: list[str] = []
            for trigger in by_name[name].get("triggers") or []:
                backups = (trigger.get("match_related") or {}).get("prefect.resource.name") or []
                for backup in [backups] if isinstance(backups, str) else backups:
                    options = (by_name.get(backup, {}).get("parameters") or {}).get("options") or {}
                    held += [p for p in options.get("parts") or every if p not in held]
            parts = tuple(p for p in every if p in held) if every and held else every
            found.setdefault(component, {}).setdefault(parts, []).append(name)
    return found


def deployable(spec: dict[str, Any], project_dir: Path = ROOT) -> tuple[list[str], list[str]]:
    """(deployments whose entrypoint file exists, those whose file does not exist yet)."""
    ready: list[str] = []
    missing: list[str] = []
    for deployment in spec.get("deployments", []):
        path = deployment["entrypoint"].split(":")[0]
        (ready if (project_dir / path).exists() else missing).append(deployment["name"])
    return ready, missing


def run_prefect_deploy(
    api_url: str | None = None,
    project_dir: Path = ROOT,
    names: list[str] | None = None,
    timeout: float = 600,
    deployed: Callable[[int], None] = lambda _: None,
) -> str:
    """`prefect --no-prompt deploy --all` (or `-n NAME ...`) in `project_dir`, its output read as it
    comes (`deployed(n)` after each deployment it reports); Unavailable on failure or timeout."""
    env = dict(os.environ, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    prefect = Path(sys.executable).with_name("prefect")
    which = [arg for name in names for arg in ("-n", name)] if names is not None else ["--all"]
    command = [str(prefect) if prefect.exists() else "prefect", "--no-prompt", "deploy", *which]
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            process.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            assert process.stdout is not None
            made = 0
            for line in process.stdout:
                lines.append(line)
                if line.startswith(DEPLOYED_LINE):
                    made += 1
                    deployed(made)
        finally:
            timer.cancel()
    if process.returncode != 0:
        tail = [line.strip() for line in lines if line.strip()][-5:]
        why = f"timed out after {timeout:g} s" if expired.is_set() else "failed"
        raise Unavailable(f"prefect deploy {why} in {project_dir}: {' | '.join(tail)}")
    return "".join(lines)
