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
from tasks.catalog import locks
from tasks.storage.bucket import BackupStore

REFUSED = (gexc.Forbidden, gexc.BadRequest, gexc.Unauthorized)


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
