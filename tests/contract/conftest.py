"""One subject per registered component: how to make a source with data, read what a source or a
target holds, change it, and name a fresh target. The contract suite (test_contract.py) runs every
promise over every subject; a new component needs one module in tests/contract/subjects/ (its subject
class and `make`, the fixture body), as restic's backends each hook into its one suite. A
component with parts (tasks/engine/protocol.py) also gives `split_parts` (how its schedules split
them), `part_options(parts)` and `copy_files(source, scratch)` (tests/contract/test_restore_points.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.platform import free_port
from tasks.engine.protocol import COMPONENTS
from tests.conftest import unique

# Every promise is held with chunked manifests: any backup of more than two entries is written in
# chunks of two (format 2), so the streaming readers are what the suite exercises.
CHUNK_ENTRIES = "2"


@pytest.fixture(autouse=True)
def chunked_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_CHUNK_ENTRIES", CHUNK_ENTRIES)


@pytest.fixture(scope="session")
def composer_servers(platform: Any) -> Iterator[None]:
    from localdev.servers.composer_server import ComposerServer

    server = ComposerServer().start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COMPOSER_EMULATOR_HOST", server.target)
        yield
    server.stop()


@pytest.fixture(scope="session")
def gke_server(platform: Any) -> Iterator[Any]:
    from localdev.servers.gke_server import GkeBackupServer

    server = GkeBackupServer(port=free_port(), polls=2, demo=False).start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GKE_BACKUP_EMULATOR_HOST", server.target)
        env.setenv("KUBERNETES_EMULATOR_HOST", server.kube_url)
        yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow_secrets(prefect_harness: None) -> dict[str, str]:
    from prefect.blocks.system import Secret

    from backstop.core.secretbox import new_key

    names = {"auth": unique("airflow-auth"), "key": unique("composer-key")}
    Secret(value="admin:admin").save(names["auth"])
    Secret(value=new_key()).save(names["key"])
    return names


SUBJECTS = sorted(COMPONENTS)  # the registry: a component without a subject module fails here


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest, gcs: Any, bq: Any, settings: Any) -> Iterator[Any]:
    """A fresh subject of one component (tests/contract/subjects/<name>.py), its settings pointing at
    this test's backup buckets."""
    module = importlib.import_module(f"tests.contract.subjects.{request.param}")
    yield from module.make(request, gcs, bq, settings)


def expire_outside_data(subject: Any, manifest: Any) -> None:
    """What the service does when its own retention ends (components that keep data outside the
    backup bucket: GKE backups, BigQuery snapshot tables)."""
    if not hasattr(subject, "expire_outside_data"):
        raise AssertionError(f"{subject.component} keeps nothing outside the backup bucket")
    subject.expire_outside_data(manifest)
