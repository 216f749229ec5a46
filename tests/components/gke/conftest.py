"""The local Backup for GKE server (and its Kubernetes API) the GKE component tests talk to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.platform import free_port
from localdev.servers.gke_server import GkeBackupServer


@pytest.fixture(scope="module")
def server() -> Iterator[GkeBackupServer]:
    local = GkeBackupServer(port=free_port(), polls=3, demo=False).start()
    yield local
    local.stop()


@pytest.fixture
def gke_env(server: GkeBackupServer, monkeypatch: pytest.MonkeyPatch) -> GkeBackupServer:
    """The server, with the clients of this test pointed at it."""
    monkeypatch.setenv("GKE_BACKUP_EMULATOR_HOST", server.target)
    monkeypatch.setenv("KUBERNETES_EMULATOR_HOST", server.kube_url)
    return server
