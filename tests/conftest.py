"""Shared fixtures: the local platform (real emulators) and the Prefect test harness.

Both are session-scoped and started only by tests that ask for them, so unit tests stay fast.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A dead emulator must fail a test in seconds, not after the default 30 s of retries.
os.environ.setdefault("BACKSTOP_RETRY_TIMEOUT", "4")

from localdev.platform import EMULATOR_ENV, EXTRA_JOB_ENV, PROJECT, LocalPlatform  # noqa: E402

# The suite runs on the services it starts. A shell that sourced a platform's env (`source
# .backstop/env`, as the README does) would otherwise point the CLI calls made in this process at
# that platform, running or stopped.
PLATFORM_ENV = (*EMULATOR_ENV, *EXTRA_JOB_ENV, "PREFECT_API_URL", "PREFECT_UI_URL", "PREFECT_HOME", "BACKSTOP_HOME",
                "BACKSTOP_ALERTS_URL", "BACKSTOP_ALERTS_HOOK_URL")  # fmt: skip
for _key in PLATFORM_ENV:
    os.environ.pop(_key, None)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """fake-gcs-server (the faster local Cloud Storage; BACKSTOP_GCS_SERVER=policy for the enforcing
    one) and bqemulator on free ports; their endpoints exported to this process."""
    state = tmp_path_factory.mktemp("platform")
    server = os.environ.get("BACKSTOP_GCS_SERVER") or "fake"
    local = LocalPlatform.with_free_ports(
        state, services=("gcs", "bigquery"), persistent=False, gcs_server=server
    )
    env = local.up()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield local
    finally:
        local.down()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def gcs(platform: LocalPlatform) -> Any:
    from blocks.clients import storage_client

    return storage_client(PROJECT)


@pytest.fixture(scope="session")
def bq(platform: LocalPlatform) -> Any:
    from blocks.clients import bigquery_client

    return bigquery_client(PROJECT)


@pytest.fixture(scope="session")
def policy_gcs() -> Iterator[Any]:
    """A storage client on Backstop's local Cloud Storage server that enforces holds, retention
    policies and bucket IAM (localdev/servers/gcs_policy_server.py), served from this process."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from localdev.platform import free_port
    from localdev.servers.gcs_policy_server import serve

    roles = Path(__file__).parent.parent / "deployments" / "iam" / "roles.yaml"
    port = free_port()
    httpd = serve("127.0.0.1", port, str(roles) if roles.exists() else None)
    try:
        yield storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
        )
    finally:
        httpd.shutdown()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def seed_objects(client: Any, prefix: str, count: int, base: int, step: int) -> tuple[str, dict[str, bytes]]:
    """A new bucket of `count` random objects in three folders, object i `base + i * step` bytes;
    returns its name and what it holds."""
    name = unique(prefix)
    bucket = client.create_bucket(name)
    contents = {f"d{i % 3}/obj-{i:03d}": os.urandom(base + i * step) for i in range(count)}
    for key, data in contents.items():
        bucket.blob(key).upload_from_string(data)
    return name, contents


def read_all(client: Any, bucket: str) -> dict[str, bytes]:
    """Every object of `bucket`, name -> bytes."""
    return {b.name: b.download_as_bytes() for b in client.list_blobs(bucket)}


@pytest.fixture
def settings(gcs: Any) -> Any:
    """In-memory settings with a fresh backup bucket (and secondary bucket) per test."""
    from blocks.settings import BackstopSettings

    primary, secondary = unique("backups"), unique("backups-dr")
    for name in (primary, secondary):
        gcs.create_bucket(name)
    return BackstopSettings(project=PROJECT, backup_bucket=primary, secondary_bucket=secondary)


@pytest.fixture
def store(gcs: Any, settings: Any) -> Any:
    from tasks.storage.bucket import BackupStore

    return BackupStore(gcs, settings.backup_bucket)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A Prefect test server for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def saved_settings(prefect_harness: None, settings: Any) -> str:
    """`settings` saved as a block; returns the block name to pass to flows."""
    name = unique("settings")
    settings.save(name, overwrite=True)
    return name


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"


def service_account_info(email: str) -> dict[str, str]:
    """A service-account key document with a freshly generated RSA key (never used on a network)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "backstop-demo",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
