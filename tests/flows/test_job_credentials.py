"""A deployment's BACKSTOP_CREDENTIALS_BLOCK makes every Google client use that service account's key."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import service_account_info, unique

pytestmark = pytest.mark.flow


def test_the_jobs_block_gives_the_credentials_and_a_missing_block_falls_back_with_a_warning(
    prefect_harness: None, monkeypatch: Any
) -> None:
    from prefect_gcp import GcpCredentials

    from blocks import clients

    email = "backstop-pruner@backstop-demo.iam.gserviceaccount.com"
    name = unique("backstop-pruner")
    GcpCredentials(service_account_info=service_account_info(email)).save(name, overwrite=True)
    monkeypatch.setenv(clients.CREDENTIALS_BLOCK, name)
    assert clients.job_credentials().service_account_email == email

    missing = unique("backstop-restorer")
    monkeypatch.setenv(clients.CREDENTIALS_BLOCK, missing)
    # Prefect reconfigures logging on its first API call (pytest's capture handler goes): listen here
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("blocks.clients").addHandler(handler)
    try:
        assert clients.job_credentials() is None  # the worker's own credentials, said in the log
    finally:
        logging.getLogger("blocks.clients").removeHandler(handler)
    [warning] = [r.getMessage() for r in records]
    assert f"gcp-credentials/{missing}" in warning and "Application Default Credentials" in warning
