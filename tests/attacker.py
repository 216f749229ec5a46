"""A compromised Backstop credential, played against Backstop's local Cloud Storage server
(localdev/servers/gcs_policy_server.py: holds, retention policies, object retention and bucket IAM
enforced like the JSON API) through the real client: every way to destroy or weaken a kept backup
it can try, and which of them worked (none should)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from google.api_core import exceptions as gexc

from backstop.core.manifest import BackupManifest
from backstop.core.retention import RetentionPolicy
from backstop.core.retention_lock import RetentionLock
from blocks.clients import storage_client_as
from localdev.platform import PROJECT
from tasks.catalog import locks
from tasks.operations import iam
from tasks.operations.harden import harden_bucket
from tasks.storage.bucket import BackupStore
from tests.conftest import unique

REFUSED = (gexc.Forbidden, gexc.BadRequest, gexc.Unauthorized)


class Domains:
    """Primary and secondary buckets with object retention, hardened, IAM from roles.yaml, and a
    store per job acting as that job's service account."""

    def __init__(self, owner: Any, policy: RetentionPolicy, mode: str = "Unlocked") -> None:
        self.owner = owner
        self.primary = owner.create_bucket(
            unique("backups"), location="us-central1", enable_object_retention=True
        ).name
        self.secondary = owner.create_bucket(
            unique("backups-dr"), location="europe-west1", enable_object_retention=True
        ).name
        for bucket in (self.primary, self.secondary):
            harden_bucket(owner, bucket, 7)
        for bucket, pairs in iam.bindings(
            iam.load_spec(), PROJECT, {"backup": [self.primary], "secondary": [self.secondary]}
        ).items():
            found = owner.get_bucket(bucket)
            iam_policy = found.get_iam_policy(requested_policy_version=3)
            iam_policy.bindings.extend(pairs)
            iam_policy.version = 3  # the work files' grants have a condition
            found.set_iam_policy(iam_policy)
        self.lock = RetentionLock(mode, policy)  # type: ignore[arg-type]

    def client(self, job: str) -> Any:
        return storage_client_as(PROJECT, iam.email(job, PROJECT))

    def store(self, job: str, secondary: bool = False) -> BackupStore:
        bucket = self.secondary if secondary else self.primary
        return BackupStore(self.client(job), bucket, lock=self.lock, hold_validated=True)


def backup_objects(store: BackupStore, manifest: BackupManifest) -> list[str]:
    """Every object of a backup, read as its owner: what it references and its folder's objects."""
    listed = set(store.list(manifest.folder))
    return sorted(listed | set(locks.backup_keys(store, manifest)))


def _tried(what: str, attempt: Callable[[], Any], worked: list[str]) -> None:
    try:
        attempt()
    except REFUSED:
        return
    worked.append(what)


def _shorten(bucket: Any, key: str, override: bool) -> None:
    blob = bucket.blob(key)
    blob.retention.mode = "Unlocked"
    blob.retention.retain_until_time = datetime.now(UTC) + timedelta(seconds=1)
    blob.patch(override_unlocked_retention=override)


def _remove_retention(bucket: Any, key: str) -> None:
    blob = bucket.blob(key)
    blob._patch_property("retention", {"mode": None, "retainUntilTime": None})
    blob.patch(override_unlocked_retention=True)


def _release(bucket: Any, key: str) -> None:
    blob = bucket.blob(key)
    blob.temporary_hold = False
    blob.event_based_hold = False
    blob.patch()


def attack_objects(client: Any, bucket_name: str, keys: Iterable[str]) -> list[str]:
    """Release the holds of each object, then delete, overwrite, shorten or remove its retention."""
    bucket, worked = client.bucket(bucket_name), []
    for key in keys:
        where = f"gs://{bucket_name}/{key}"
        attempts: list[tuple[str, Callable[[str], Any]]] = [
            ("release holds of", lambda k: _release(bucket, k)),  # first: then what else holds it
            ("delete", lambda k: bucket.blob(k).delete()),
            ("overwrite", lambda k: bucket.blob(k).upload_from_string(b"ransom")),
            ("shorten retention of", lambda k: _shorten(bucket, k, False)),
            ("shorten retention (override) of", lambda k: _shorten(bucket, k, True)),
            ("remove retention of", lambda k: _remove_retention(bucket, k)),
        ]
        for what, attempt in attempts:
            _tried(f"{what} {where}", partial(attempt, key), worked)
    return worked


def attack_bucket(client: Any, bucket_name: str) -> list[str]:
    """Remove or shorten the bucket retention policy, rewrite its IAM policy, delete the bucket."""
    worked: list[str] = []

    def remove_policy() -> None:
        bucket = client.bucket(bucket_name)
        bucket.retention_period = None
        bucket.patch()

    def shorten_policy() -> None:
        bucket = client.bucket(bucket_name)
        bucket.retention_period = 1
        bucket.patch()

    def grant_self() -> None:
        bucket = client.bucket(bucket_name)
        policy = bucket.get_iam_policy(requested_policy_version=3)
        policy.bindings.append({"role": "roles/storage.admin", "members": {"allAuthenticatedUsers"}})
        bucket.set_iam_policy(policy)

    def replace_iam() -> None:
        from google.api_core.iam import Policy

        policy = Policy()
        policy.bindings = [{"role": "roles/storage.admin", "members": {"allAuthenticatedUsers"}}]
        client.bucket(bucket_name).set_iam_policy(policy)

    _tried(f"remove the retention policy of gs://{bucket_name}", remove_policy, worked)
    _tried(f"shorten the retention policy of gs://{bucket_name}", shorten_policy, worked)
    _tried(f"rewrite the IAM policy of gs://{bucket_name}", grant_self, worked)
    _tried(f"replace the IAM policy of gs://{bucket_name}", replace_iam, worked)
    _tried(f"delete gs://{bucket_name}", lambda: client.bucket(bucket_name).delete(force=True), worked)
    return worked
