"""Every deployment of prefect.yaml runs with the credentials of its job's service account (deployments/iam/)."""

from pathlib import Path

import pytest
import yaml

from tasks.operations.iam import load_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
# Deployments that run with the worker's own credentials: they change or inspect bucket configuration
# and IAM, which no job's role may do.
ADMIN = {"weekly-preflight", "harden-backup-buckets", "storage-tiers"}


def job_of(name: str) -> str:
    if name.endswith("-backup"):
        return "backup"
    for job in ("validate", "restore", "drill", "retention", "secondary-copy", "health"):
        if job in name:
            return "copy-secondary" if job == "secondary-copy" else job
    raise AssertionError(f"no job for deployment {name}")


def test_each_deployment_uses_the_credentials_block_of_its_jobs_service_account() -> None:
    spec = load_spec()
    accounts = {job: a["name"] for a in spec["service_accounts"] for job in a["jobs"]}
    for deployment in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]:
        env = (deployment["work_pool"].get("job_variables") or {}).get("env") or {}
        if deployment["name"] in ADMIN:
            assert "BACKSTOP_CREDENTIALS_BLOCK" not in env, deployment["name"]
            continue
        assert env.get("BACKSTOP_CREDENTIALS_BLOCK") == accounts[job_of(deployment["name"])], deployment[
            "name"
        ]
