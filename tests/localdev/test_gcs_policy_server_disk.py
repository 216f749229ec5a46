"""The enforcing local Cloud Storage server on disk (`backstop up`'s default): what it holds, and
what it protects, survives a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from localdev.platform import PROJECT, free_port
from localdev.servers.gcs_policy_server import serve, stop

pytestmark = pytest.mark.integration


def _client(port: int) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
    )


def test_buckets_objects_and_their_retention_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    httpd = serve("127.0.0.1", port, data_dir=str(tmp_path))
    try:
        bucket = _client(port).create_bucket("kept-backups", enable_object_retention=True)
        for i in range(50):
            bucket.blob(f"data/{i:02d}").upload_from_string(f"payload {i}".encode())
        bucket.blob("data/").upload_from_string(b"")  # a folder placeholder beside its objects
        retained = bucket.blob("data/00")
        retained.reload()
        retained.retention.mode = "Unlocked"
        retained.retention.retain_until_time = datetime.now(UTC) + timedelta(days=1)
        retained.patch()
        bucket.blob("data/01").delete()
    finally:
        stop(httpd)

    port = free_port()
    httpd = serve("127.0.0.1", port, data_dir=str(tmp_path))
    try:
        bucket = _client(port).bucket("kept-backups")
        found = {b.name: b.download_as_bytes() for b in bucket.list_blobs() if b.name != "data/"}
        assert found == {f"data/{i:02d}": f"payload {i}".encode() for i in range(50) if i != 1}
        assert bucket.get_blob("data/").size == 0
        with pytest.raises(gexc.Forbidden, match="retention"):
            bucket.blob("data/00").delete()
        with pytest.raises(gexc.Forbidden, match="retention"):
            bucket.blob("data/00").upload_from_string(b"replaced")
        assert bucket.blob("data/00").download_as_bytes() == b"payload 0"
        bucket.blob("data/02").delete()  # not retained: deleted as before the restart
    finally:
        stop(httpd)


def test_each_server_keeps_its_own_custom_roles(policy_gcs: storage.Client) -> None:
    """A second server in the same process (here one with no custom roles) does not take the custom
    roles of the first: a role granted on the first still gives its permissions."""
    from blocks.clients import LocalPrincipalCredentials

    other = serve("127.0.0.1", free_port())  # no roles file
    try:
        bucket = policy_gcs.create_bucket(f"roles-{free_port()}")
        member = f"serviceAccount:backstop-backup-writer@{PROJECT}.iam.gserviceaccount.com"
        policy = bucket.get_iam_policy(requested_policy_version=3)
        policy.bindings.append(
            {"role": f"projects/{PROJECT}/roles/backstopBackupWriter", "members": {member}}
        )
        bucket.set_iam_policy(policy)
        writer = storage.Client(
            project=PROJECT,
            credentials=LocalPrincipalCredentials(member),
            client_options={"api_endpoint": policy_gcs._connection.API_BASE_URL},
        )
        granted = writer.bucket(bucket.name).test_iam_permissions(
            ["storage.objects.create", "storage.objects.delete"]
        )
        assert granted == ["storage.objects.create"]
    finally:
        stop(other)
