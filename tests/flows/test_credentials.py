"""The settings' credentials block is what every Google client is built with, outside the emulators."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backstop.core.errors import ConfigError
from tests.conftest import service_account_info, unique

pytestmark = pytest.mark.flow


def test_clients_use_the_credentials_block_named_in_the_settings(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_gcp import GcpCredentials

    from blocks import clients
    from blocks.settings import BackstopSettings, load_settings

    email = "backup-writer@backstop-demo.iam.gserviceaccount.com"
    block, name = unique("sa"), unique("settings")
    GcpCredentials(service_account_info=json.dumps(service_account_info(email))).save(block)
    BackstopSettings(project="backstop-demo", backup_bucket="b", credentials_block=block).save(name)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    try:
        load_settings(name)
        client: Any = clients.storage_client("backstop-demo")
        assert client._credentials.service_account_email == email
        assert clients.bigquery_client("backstop-demo")._credentials.service_account_email == email
        # the key never reaches what a user can read back from the settings
        assert "PRIVATE KEY" not in load_settings(name).model_dump_json()
    finally:
        clients.use_credentials_block(None)


def test_a_missing_credentials_block_is_named(prefect_harness: None) -> None:
    from blocks.settings import BackstopSettings, load_settings

    name = unique("settings")
    BackstopSettings(project="backstop-demo", backup_bucket="b", credentials_block="nowhere").save(name)
    with pytest.raises(ConfigError, match="gcp-credentials/nowhere"):
        load_settings(name)
