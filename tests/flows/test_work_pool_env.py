"""The work pool's job environment that `backstop bootstrap` writes: the emulator endpoints flow runs
get from the worker, without losing a variable someone added in the UI."""

from __future__ import annotations

import pytest

from tests.conftest import unique

pytestmark = pytest.mark.flow


def test_bootstrap_writes_the_endpoints_into_the_pool_and_keeps_other_variables(
    prefect_harness: None,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    from deployments.work_pool import ensure_work_pool, with_job_env

    name = unique("pool")
    assert ensure_work_pool(name, env={"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"})
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(name)
        # someone adds a variable of their own in the UI
        client.update_work_pool(
            name, WorkPoolUpdate(base_job_template=with_job_env(pool.base_job_template, {"TEAM": "data"}))
        )
    assert not ensure_work_pool(name, env={"STORAGE_EMULATOR_HOST": "http://127.0.0.1:2"})
    with get_client(sync_client=True) as client:
        env = client.read_work_pool(name).base_job_template["variables"]["properties"]["env"]
    assert env["default"] == {"TEAM": "data", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:2"}

    ensure_work_pool(name, env={})  # bootstrap against Google Cloud: no endpoints
    with get_client(sync_client=True) as client:
        env = client.read_work_pool(name).base_job_template["variables"]["properties"]["env"]
    assert env["default"] == {"TEAM": "data"}
