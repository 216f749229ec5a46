"""The JSON API's batch endpoint on the enforcing local Cloud Storage server, as Google's client
library and Backstop's batched copies send it: each request of a batch is served, and refused, as
the same request sent alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage

from blocks.clients import LocalPrincipalCredentials, storage_client
from localdev.platform import PROJECT
from tasks.storage.copies import Copy, rewrite_many
from tasks.storage.google_api import crc32c_b64, direct_calls, object_path
from tasks.storage.objects import ObjectStore
from tests.conftest import unique

pytestmark = pytest.mark.integration


@pytest.fixture
def client_as(policy_gcs: storage.Client, monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], Any]:
    """A client of the enforcing server built as Backstop builds them (its copies sent directly),
    acting as a principal (None: the server's owner)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)

    def make(member: str | None = None) -> Any:
        client = storage_client(PROJECT, LocalPrincipalCredentials(member) if member else None)
        assert direct_calls(client) is not None
        return client

    return make


def _grant(bucket: Any, role: str, member: str) -> None:
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings.append({"role": role, "members": {member}})
    bucket.set_iam_policy(policy)


def test_the_client_librarys_own_batch_deletes_and_patches_each_object(policy_gcs: storage.Client) -> None:
    bucket = policy_gcs.create_bucket(unique("batch-lib"))
    for name in ("a", "b", "c"):
        bucket.blob(name).upload_from_string(name.encode())
    with policy_gcs.batch(raise_exception=False) as batch:
        bucket.blob("a").delete()
        bucket.blob("missing").delete()
        kept = bucket.blob("c")
        kept.metadata = {"reviewed": "yes"}
        kept.patch()
    assert [r.status_code // 100 for r in batch._responses] == [2, 4, 2]
    assert batch._responses[1].status_code == 404
    assert {b.name: b.metadata for b in policy_gcs.list_blobs(bucket.name)} == {
        "b": None,
        "c": {"reviewed": "yes"},
    }


def test_a_batch_of_copies_is_refused_copy_by_copy_as_the_same_copies_alone(
    policy_gcs: storage.Client, client_as: Callable[[str | None], Any]
) -> None:
    """A writer that may read the source and create (not replace) objects in the target: in one
    batch, a new copy is made, a copy over an existing object is refused (403), a copy of a missing
    object is not found (404), and the refused ones change nothing."""
    member = f"serviceAccount:batch-writer@{PROJECT}.iam.gserviceaccount.com"
    source = policy_gcs.create_bucket(unique("batch-src"))
    target = policy_gcs.create_bucket(unique("batch-dst"))
    _grant(source, "roles/storage.objectViewer", member)
    _grant(target, "roles/storage.objectCreator", member)
    source.blob("new").upload_from_string(b"new bytes")
    source.blob("over").upload_from_string(b"replacement")
    target.blob("over").upload_from_string(b"original")

    writer = client_as(member)
    dst = writer.bucket(target.name)
    names = ["new", "over", "missing"]
    made = rewrite_many(writer, dst, [Copy(source.name, n, None, n) for n in names])
    assert made[0] is not None and made[0].crc32c == crc32c_b64(b"new bytes")
    assert made[1:] == [None, None]
    calls = [
        ("POST", f"{object_path(source.name, n)}/rewriteTo{object_path(target.name, n)}", {}, None)
        for n in names
    ]
    answers = direct_calls(writer).batch(calls[1:], 30)
    assert [type(a) for a in answers] == [gexc.Forbidden, gexc.NotFound]
    assert "storage.objects.delete" in str(answers[0])
    assert {b.name: b.download_as_bytes() for b in policy_gcs.list_blobs(target.name)} == {
        "new": b"new bytes",
        "over": b"original",
    }


def test_a_batch_over_google_s_limit_of_100_requests_is_refused_whole(
    policy_gcs: storage.Client, client_as: Callable[[str | None], Any]
) -> None:
    bucket = policy_gcs.create_bucket(unique("batch-limit"))
    bucket.blob("o").upload_from_string(b"x")
    calls = [
        ("POST", f"{object_path(bucket.name, 'o')}/rewriteTo{object_path(bucket.name, f'c{i}')}", {}, None)
        for i in range(101)
    ]
    with pytest.raises(gexc.BadRequest, match="at most 100 requests"):
        direct_calls(client_as(None)).batch(calls, 30)
    assert [b.name for b in policy_gcs.list_blobs(bucket.name)] == ["o"]


def test_deletes_in_one_batch_keep_what_the_bucket_protects_and_name_why(
    policy_gcs: storage.Client, client_as: Callable[[str | None], Any]
) -> None:
    """Prune's deletes go 100 to a batch request: a held object and one under the bucket's
    retention policy are kept (and say why), a missing one counts as deleted, the rest are gone."""
    bucket = policy_gcs.create_bucket(unique("batch-del"))
    for i in range(5):
        bucket.blob(f"plain/{i}").upload_from_string(b"x")
    held = bucket.blob("held")
    held.upload_from_string(b"h")
    held.temporary_hold = True
    held.patch()
    store = ObjectStore(client_as(None), bucket.name)
    keys = [*(f"plain/{i}" for i in range(5)), "held", "missing"]
    outcome = store.delete_objects(keys)
    assert sorted(outcome.deleted) == sorted([*(f"plain/{i}" for i in range(5)), "missing"])
    assert outcome.kept == {"held": "temporary hold"} and not outcome.failed
    assert [b.name for b in policy_gcs.list_blobs(bucket.name)] == ["held"]

    bucket.retention_period = 3600
    bucket.patch()
    bucket.blob("young/a").upload_from_string(b"a")
    bucket.blob("young/b").upload_from_string(b"b")
    outcome = store.delete_objects(["young/a", "young/b"])
    assert not outcome.deleted and set(outcome.kept) == {"young/a", "young/b"}
    assert all(why.startswith("bucket retention policy") for why in outcome.kept.values())


def test_an_exact_restores_batched_deletes_fail_on_an_object_the_bucket_holds(
    client_as: Callable[[str | None], Any],
) -> None:
    from backstop.core.errors import PermissionDenied
    from tasks.components.gcs.restore import delete_objects
    from tasks.storage.spool import KeySpool

    client = client_as(None)
    bucket = client.create_bucket(unique("exact-held"))
    names = [f"added-{i}" for i in range(6)]
    for name in names:
        bucket.blob(name).upload_from_string(b"after the backup")
    held = bucket.blob("added-3")
    held.temporary_hold = True
    held.patch()
    with KeySpool() as deletes:
        deletes.add((name, 16, None, None) for name in names)
        with pytest.raises(
            PermissionDenied, match=r"gs://exact-held.*/added-3: kept by the bucket \(temporary hold\)"
        ):
            delete_objects(client, bucket.name, deletes)
    assert [b.name for b in client.list_blobs(bucket.name)] == ["added-3"]
    held.temporary_hold = False
    held.patch()
