"""The contract subject of the gcs component (see tests/contract/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import unique

GKE_LOCATION = "us-central1"
COMPOSER_PARENT = "projects/backstop-demo/locations/europe-west1"


class GcsSubject:
    """A bucket; an exact restore's scope is the backed-up prefix data/ (scope_options)."""

    component = "gcs"
    # a name `only` takes that the seeded backup does not hold (an object prefix)
    absent_part = "nothing-here/"
    scope_options: dict[str, Any] | None = {"prefixes": ["data/"]}
    within_scope = ["data/part-1.csv"]  # what `only` names inside that scope
    # a backup of part of the bucket (laid over one of the whole), and what `only` names inside it
    subset_options: dict[str, Any] | None = scope_options
    within_subset = within_scope
    # what `only` names across the subset and the rest (None: its seed has nothing beside the subset)
    spanning_subset: list[str] | None = ["data/", "readme.txt"]

    def __init__(self, gcs: Any, settings: Any) -> None:
        self.gcs, self.settings = gcs, settings

    def seed(self) -> str:
        bucket = self.gcs.create_bucket(unique("src"))
        for i in range(6):
            bucket.blob(f"data/part-{i}.csv").upload_from_string(f"id,value\n{i},{i * i}\n".encode())
        bucket.blob("readme.txt").upload_from_string(b"hello")
        return str(bucket.name)

    def state(self, where: str) -> Any:
        bucket = where.removeprefix("gs://")
        return {
            b.name: (b.download_as_bytes(), b.content_type, b.metadata or {})
            for b in self.gcs.list_blobs(bucket)
        }

    def change(self, source: str) -> None:
        self.gcs.bucket(source).blob("readme.txt").upload_from_string(b"changed after the backup")

    def change_one_kind(self, source: str) -> None:
        """Metadata only: the same bytes, another content type and custom metadata."""
        blob = self.gcs.bucket(source).get_blob("data/part-1.csv")
        blob.content_type, blob.metadata = "application/x-changed", {"owner": "someone else"}
        blob.patch()

    def add_in_scope(self, source: str) -> None:
        self.gcs.bucket(source).blob("data/added.csv").upload_from_string(b"id,value\n9,81\n")

    def add_outside_scope(self, source: str) -> None:
        self.gcs.bucket(source).blob("other/notes.txt").upload_from_string(b"not backed up")

    def change_in_subset(self, source: str) -> None:
        self.add_in_scope(source)

    def change_outside_subset(self, source: str) -> None:
        self.change(source)

    def laid_over(self, whole: Any, part: Any) -> Any:
        """The state a restore reads from a backup of the whole (`whole`) with a newer backup of
        the part (`part`) laid over it: data/ as `part` has it, the rest as `whole` has it."""
        inside = {k: v for k, v in part.items() if k.startswith("data/")}
        return {k: v for k, v in whole.items() if not k.startswith("data/")} | inside

    def new_target(self, source: str) -> str:
        return unique("restored")

    def gone(self, target: str) -> bool:
        return self.gcs.lookup_bucket(target.removeprefix("gs://")) is None


def make(request: pytest.FixtureRequest, gcs: Any, bq: Any, settings: Any) -> Iterator[GcsSubject]:
    yield GcsSubject(gcs, settings)
