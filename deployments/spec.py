"""The deployment spec (prefect.yaml) and `prefect deploy`: which deployments it holds, per component
and kind, which of them can be deployed (their entrypoint file exists), and running
`prefect --no-prompt deploy` on them (deployments/bootstrap.py's `deploy`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from backstop.core.errors import Unavailable

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"


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


def deployable(spec: dict[str, Any], project_dir: Path = ROOT) -> tuple[list[str], list[str]]:
    """(deployments whose entrypoint file exists, those whose file does not exist yet)."""
    ready: list[str] = []
    missing: list[str] = []
    for deployment in spec.get("deployments", []):
        path = deployment["entrypoint"].split(":")[0]
        (ready if (project_dir / path).exists() else missing).append(deployment["name"])
    return ready, missing


def run_prefect_deploy(
    api_url: str | None = None, project_dir: Path = ROOT, names: list[str] | None = None, timeout: float = 600
) -> str:
    """`prefect --no-prompt deploy --all` (or `-n NAME ...`) in `project_dir`; Unavailable on failure."""
    env = dict(os.environ, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    prefect = Path(sys.executable).with_name("prefect")
    which = [arg for name in names for arg in ("-n", name)] if names is not None else ["--all"]
    command = [str(prefect) if prefect.exists() else "prefect", "--no-prompt", "deploy", *which]
    done = subprocess.run(command, cwd=project_dir, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise Unavailable(f"prefect deploy failed in {project_dir}: {' | '.join(tail)}")
    return done.stdout
