"""Cloud Storage's hot calls sent straight over urllib3 (tasks/storage/google_api.DirectCalls):
copies, rewrites and downloads must give what the library's calls give, on the local platform's
storage server."""

from __future__ import annotations

import os
from typing import Any

import pytest

from backstop.core.errors import NotFound
from tasks.storage.copies import Copy, copy_object, rewrite, rewrite_many
from tasks.storage.google_api import crc32c_b64, direct_calls
from tasks.storage.objects import ObjectStore
from tests.conftest import unique

pytestmark = pytest.mark.integration

# Names that need escaping in a URL path or query, and one with a slash kept as it is.
NAMES = [
    "plain",
    "with space/and slash",
    "hash#question?percent%25",
    "plus+amp&eq=",
    "ünï/cødé ☃",
    "tilde~star*",
]


@pytest.fixture
def buckets(gcs: Any) -> tuple[Any, Any, dict[str, bytes]]:
    source, target = gcs.create_bucket(unique("direct-src")), gcs.create_bucket(unique("direct-dst"))
    contents = {name: os.urandom(100 + i * 37) for i, name in enumerate(NAMES)}
    for name, data in contents.items():
        source.blob(name).upload_from_string(data)
    return source, target, contents


def test_the_clients_the_platform_builds_send_directly(gcs: Any) -> None:
    assert direct_calls(gcs) is not None  # else every test here would check the library instead


def test_copies_and_rewrites_of_escaped_names_hold_the_same_bytes_and_report_the_new_object(
    gcs: Any, buckets: tuple[Any, Any, dict[str, bytes]]
) -> None:
    source, target, contents = buckets
    for name in NAMES:
        live = source.get_blob(name)
        copied = copy_object(source.blob(name, generation=live.generation), target, f"copy/{name}")
        rewritten = rewrite(source.blob(name), target.blob(f"rewrite/{name}"))
        for new, key in ((copied, f"copy/{name}"), (rewritten, f"rewrite/{name}")):
            stored = target.get_blob(key)
            assert (new.name, new.bucket.name) == (key, target.name)
            assert (new.size, new.crc32c, new.generation) == (stored.size, stored.crc32c, stored.generation)
            assert new.crc32c == crc32c_b64(contents[name])
            assert ObjectStore(gcs, target.name).get_bytes(key) == contents[name]


def test_batched_copies_and_deletes_of_escaped_names_hold_the_same_bytes(
    gcs: Any, buckets: tuple[Any, Any, dict[str, bytes]]
) -> None:
    source, target, contents = buckets
    made = rewrite_many(gcs, target, [Copy(source.name, n, None, f"batch/{n}") for n in NAMES])
    assert [m.name if m is not None else None for m in made] == [f"batch/{n}" for n in NAMES]
    store = ObjectStore(gcs, target.name)
    for name in NAMES:
        assert store.get_bytes(f"batch/{name}") == contents[name]
    outcome = store.delete_objects([f"batch/{n}" for n in NAMES])
    assert sorted(outcome.deleted) == sorted(f"batch/{n}" for n in NAMES) and not outcome.failed
    assert list(gcs.list_blobs(target.name, prefix="batch/")) == []


def test_a_copy_takes_the_generation_it_names_not_the_live_object(gcs: Any) -> None:
    source = gcs.bucket(unique("direct-versions"))
    source.versioning_enabled = True
    source = gcs.create_bucket(source)
    target = gcs.create_bucket(unique("direct-dst"))
    first = source.blob("o")
    first.upload_from_string(b"first")
    source.blob("o").upload_from_string(b"second")
    old = source.blob("o", generation=first.generation)
    assert ObjectStore(gcs, target.name).get_bytes(copy_object(old, target, "a").name) == b"first"
    assert ObjectStore(gcs, target.name).get_bytes(rewrite(old, target.blob("b")).name) == b"first"


def test_what_is_missing_is_named_not_found(gcs: Any, buckets: tuple[Any, Any, dict[str, bytes]]) -> None:
    source, target, _ = buckets
    store = ObjectStore(gcs, target.name)
    with pytest.raises(NotFound, match=rf"reading gs://{target.name}/nothing here: not found"):
        store.get_bytes("nothing here")
    from google.api_core import exceptions as gexc

    with pytest.raises(gexc.NotFound):
        copy_object(source.blob("nothing here"), target, "x")
    with pytest.raises(gexc.NotFound):
        rewrite(source.blob("plain"), gcs.bucket(unique("no-such-bucket")).blob("x"))
