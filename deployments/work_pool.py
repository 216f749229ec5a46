"""The process work pool for bootstrap: created when missing, with this environment's emulator
endpoints as its job environment (none against Google Cloud), so worker-run flows reach what the
CLI reaches (deployments/bootstrap.py)."""

from __future__ import annotations

import copy
import os
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from blocks.clients import EMULATOR_ENV, EXTRA_JOB_ENV

WORK_POOL = "backstop-process"


def job_environment() -> dict[str, str]:
    """The emulator endpoints of this environment, for flow runs on the work pool (empty on Google Cloud)."""
    return {key: os.environ[key] for key in (*EMULATOR_ENV, *EXTRA_JOB_ENV) if os.environ.get(key)}


def with_job_env(template: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """`template` with `env` as the default job environment; the endpoint variables Backstop manages
    are replaced, any other variable a person added in the UI is kept."""
    updated = copy.deepcopy(template)
    prop = updated.setdefault("variables", {}).setdefault("properties", {}).setdefault("env", {})
    default = {
        k: v for k, v in (prop.get("default") or {}).items() if k not in (*EMULATOR_ENV, *EXTRA_JOB_ENV)
    }
    default.update(env)
    if default:
        prop["default"] = default
    else:
        prop.pop("default", None)
    return updated


def ensure_work_pool(name: str = WORK_POOL, env: dict[str, str] | None = None) -> bool:
    """Create the process work pool `name` if missing, and set its job environment to `env`
    (default: job_environment()); True when created."""
    from prefect.workers.process import ProcessWorker

    env = job_environment() if env is None else env
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = with_job_env(ProcessWorker.get_default_base_job_template(), env)
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
                return True
            except ObjectAlreadyExists:  # a worker starting at the same time made it
                pool = client.read_work_pool(name)
        wanted = with_job_env(pool.base_job_template, env)
        if wanted != pool.base_job_template:
            client.update_work_pool(name, WorkPoolUpdate(base_job_template=wanted))
    return False
