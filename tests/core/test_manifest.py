from datetime import UTC, datetime

import pytest

from backstop.core.errors import InvalidInput, ValidationFailed
from backstop.core.manifest import (
    BackupManifest,
    ManifestEntry,
    backup_time,
    chunk_file,
    chunk_rows,
    chunk_stored,
    new_backup_id,
    parse_chunk,
    select,
)

pytestmark = pytest.mark.unit


def make(source: str = "raw", when: datetime | None = None, status: str = "complete") -> BackupManifest:
    started = when or datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    return BackupManifest(
        backup_id=new_backup_id(started),
        component="gcs",
        source=source,
        started_at=started,
        status=status,
        entries=[ManifestEntry(name="a b/ü.txt", stored_key="pool/gcs/raw/1/a b/ü.txt", size=3, crc32c="x")],
    )


def test_manifest_round_trips_and_lives_under_component_source_date() -> None:
    manifest = make()
    assert manifest.path == f"gcs/raw/2026/11/24/{manifest.backup_id}/manifest.json"
    again = BackupManifest.from_bytes(manifest.to_bytes())
    assert again.entries == manifest.entries and again.backup_id == manifest.backup_id


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b.replace(b'"size": 3', b'"size": 4'),
        lambda b: b"",
        lambda b: b"{}",
    ],
)
def test_damaged_manifest_is_refused_with_its_location(damage) -> None:
    with pytest.raises(ValidationFailed, match="gs://bk/x/manifest.json"):
        BackupManifest.from_bytes(damage(make().to_bytes()), where="gs://bk/x/manifest.json")


def test_backup_id_encodes_start_time_and_rejects_garbage() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert backup_time(new_backup_id(moment)) == moment
    for bad in ["", "latest", "20261124T214600Z", "../20261124T214600Z-abcdef"]:
        with pytest.raises(InvalidInput):
            backup_time(bad)


def test_select_filters_and_orders_newest_first() -> None:
    old = make(when=datetime(2026, 11, 1, tzinfo=UTC), status="validated")
    new = make(when=datetime(2026, 11, 20, tzinfo=UTC))
    other = make(source="other", when=datetime(2026, 11, 21, tzinfo=UTC))
    assert select([old, new, other], source="raw") == [new, old]
    assert select([old, new, other], validated_only=True) == [old]
    assert select([old, new, other], before=datetime(2026, 11, 10, tzinfo=UTC)) == [old]


def test_prune_reads_the_keys_and_sizes_a_chunk_sealed_and_nothing_edited() -> None:
    entries = [
        ManifestEntry(
            name=f"o{i}", stored_key=f"pool/gcs/b/{i}", size=i, crc32c="AAAAAA==", metadata={"k": "v"}
        )
        for i in range(5)
    ]
    ref, data = chunk_file([(e.name, e.size, e.model_dump_json()) for e in entries])
    assert chunk_stored(data, ref, "c") == [
        (e.name, e.stored_key, e.size, e.crc32c) for e in parse_chunk(data, ref, "c")
    ]
    with pytest.raises(ValidationFailed, match="does not match its digest"):
        chunk_stored(data.replace(b"pool/gcs/b/3", b"pool/gcs/b/9"), ref, "c")
    with pytest.raises(ValidationFailed, match="holds 5 entries, header says 6"):
        chunk_stored(data, ref.model_copy(update={"entries": 6}), "c")


def test_chunks_are_cut_where_the_names_say_so_backups_that_differ_in_a_few_entries_share_the_rest() -> None:
    def rows(names: list[str]) -> list[tuple[str, int, str]]:
        return [(n, 1, f'{{"name":"{n}"}}') for n in names]

    def digests(names: list[str]) -> list[str]:
        return [chunk_file(part)[0].sha256 for part in chunk_rows(rows(names), 100)]

    names = [f"data/{i:06d}" for i in range(10_000)]
    parts = list(chunk_rows(rows(names), 100))
    assert [r for part in parts for r in part] == rows(names)  # every row, in order
    assert max(map(len, parts)) <= 200 and 70 <= len(parts) <= 330  # 50 a chunk on average

    before = digests(names)
    added = sorted([*names, "data/000100-new", "data/005000-new"])  # objects appear near the start
    removed = names[7:]  # the oldest objects expire
    for later in (added, removed):
        after = digests(later)
        assert len(set(before) - set(after)) <= 2 and len(set(after) - set(before)) <= 2
