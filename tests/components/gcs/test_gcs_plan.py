"""The streaming Cloud Storage plan: what is copied, what is reused, and that it streams."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from backstop.core.manifest import ManifestEntry
from tasks.components.gcs.plan import (
    PlanCounts,
    SourceObject,
    entry_for,
    plan_backup,
    pool_key,
)
from tasks.storage.parallel import growing_batches
from tasks.storage.spool import EntrySpool

pytestmark = pytest.mark.unit

BUCKET = "src"


def obj(name: str, generation: int = 1, size: int = 10, crc: str = "AAAAAA==") -> SourceObject:
    return SourceObject(name, generation, size, crc)


def run(
    objects: list[SourceObject], earlier: list[ManifestEntry], size: int = 2
) -> tuple[list, list, PlanCounts]:
    kept: list[ManifestEntry] = []
    counts = PlanCounts()
    units = list(plan_backup(objects, BUCKET, earlier, kept.extend, counts, itertools.repeat(size)))
    return [item for unit in units for item in unit], kept, counts


def test_unchanged_objects_reuse_the_previous_copy_and_the_rest_are_copied() -> None:
    previous = [entry_for(obj(n), f"old-layout/{n}") for n in ("a", "b", "c")]
    now = [
        obj("a"),  # unchanged: same generation
        obj("b", generation=2),  # rewritten with the same bytes and metadata: a new generation
        obj("c", generation=3, size=11),  # changed
        obj("d"),  # new
    ]  # "e" was deleted: it is simply not in the listing
    to_copy, kept, counts = run(now, previous)

    assert {e.name: e.stored_key for e in kept} == {"a": "old-layout/a", "b": "old-layout/b"}
    assert [e.generation for e in kept] == [1, 2]  # the entry records what is live now
    assert [(o.name, key) for o, key in to_copy] == [
        ("c", pool_key(BUCKET, "c", 3)),
        ("d", pool_key(BUCKET, "d", 1)),
    ]
    assert (counts.reused, counts.copied, counts.copy_bytes) == (2, 2, 21)


def test_an_earlier_copy_known_twice_is_reused_once() -> None:
    """The previous backup and an unfinished run may both know an object (heapq-merged streams)."""
    earlier = [
        entry_for(obj("a", size=9), "prev/a"),  # other bytes: not reusable
        entry_for(obj("a", 2), "resumed/a"),  # the live generation, copied by a run that died
        entry_for(obj("b", 5), "r/b"),
    ]
    to_copy, kept, _ = run([obj("a", 2), obj("b", 5)], earlier)
    assert [(e.name, e.stored_key) for e in kept] == [("a", "resumed/a"), ("b", "r/b")] and not to_copy


def test_placeholders_are_counted_not_copied() -> None:
    to_copy, kept, counts = run([SourceObject("dir/", 1, 0, "AAAAAA=="), obj("dir/x")], [])
    assert [o.name for o, _ in to_copy] == ["dir/x"] and counts.placeholders == 1


def test_copies_start_while_the_listing_goes_on() -> None:
    """The first batch comes out after two objects are listed, not after the whole listing."""
    listed: list[str] = []

    def listing() -> Iterator[SourceObject]:
        for i in range(1_000_000):
            listed.append(f"o{i:07d}")
            yield obj(f"o{i:07d}")

    first = next(plan_backup(listing(), BUCKET, [], lambda _: None, PlanCounts(), itertools.repeat(2)))
    assert len(first) == 2 and len(listed) == 2


def test_batches_grow_so_a_bucket_of_any_size_runs_in_a_few_hundred_tasks() -> None:
    sizes, total = [], 0
    for size in growing_batches(1000):
        sizes.append(size)
        total += size
        if total >= 10_000_000:
            break
    assert sizes[:100] == [1000] * 100 and max(sizes) <= 50_000
    assert 100 < len(sizes) < 700


def test_the_entry_spool_gives_entries_back_in_name_order_last_write_winning() -> None:
    with EntrySpool([entry_for(obj(n), f"k/{n}") for n in ("c", "a", "b")]) as spool:
        spool.add([entry_for(obj("a", 9), "k/a9")])
        assert [(e.name, e.generation) for e in spool] == [("a", 9), ("b", 1), ("c", 1)]
        assert len(spool) == 3 and spool.total_bytes == 30


def test_a_prefix_backup_holds_a_restore_of_names_under_its_prefixes_and_never_of_the_whole_bucket() -> None:
    from backstop.core.manifest import BackupManifest, utcnow
    from tasks.components.gcs.component import COMPONENT
    from tasks.components.gcs.options import GcsOptions
    from tasks.engine.protocol import RestoreRequest

    assert COMPONENT.scope(GcsOptions(prefixes=["b/", "a/", "a/"])) == ["a/", "b/"]
    assert COMPONENT.scope(GcsOptions(prefixes=["", "a/"])) is None and COMPONENT.scope(GcsOptions()) is None
    narrowed = BackupManifest(
        backup_id="20261207T000000Z-000001", component="gcs", source="lake", started_at=utcnow(),
        options={"prefixes": ["events/"]},
    )  # fmt: skip
    whole = narrowed.model_copy(update={"options": {}})

    def holds(manifest: BackupManifest, only: list[str] | None) -> bool:
        return COMPONENT.holds(manifest, RestoreRequest(source="lake", only=only))

    assert holds(narrowed, ["events/2026/a.json", "events/"]) and holds(whole, None)
    assert not holds(narrowed, None) and not holds(narrowed, ["events/a", "models/b"])
