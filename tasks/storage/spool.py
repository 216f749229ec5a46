"""Disk-backed working sets, so that memory stays flat however many objects a backup holds.

A backup of ten million objects cannot hold its entries, its source listing or the pool's
listing in memory. The operations that need them whole (sorting a backup's entries into its
manifest, looking up what a stored object holds) put them in a temporary SQLite file instead:
the standard library's well-tested B-tree, in a temporary file that nothing else can see (gone with
the connection, or with the process however it ends).

- `EntrySpool`: a backup's manifest entries by name (each kept as its JSON), read back in name
  order; entries added twice under one name keep the last.
- `KeySpool`: key -> (size, crc32c, kms key or another string the listing keeps) of a listing,
  looked up a batch at a time.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from backstop.core.manifest import ManifestEntry

Row = tuple[str, int, str]  # (name, size, the entry's JSON)
LOOKUP_BATCH = 500  # keys per query (SQLite allows 999 parameters by default in old builds)


class _Spool:
    """One temporary SQLite database with one table, closed by `close()` (at the latest when
    garbage collected: a dry run's plan).

    SQLite's own temporary database (an empty file name): a file in SQLite's temp directory
    (SQLITE_TMPDIR, TMPDIR, else /var/tmp or /tmp) that SQLite removes from the folder as soon as
    it is opened, so nothing is left behind however the process ends (a killed backup left its
    spools in /tmp before). Pages beyond the cache go to that file: memory stays flat.
    """

    schema = ""

    def __init__(self) -> None:
        self.db = sqlite3.connect("", check_same_thread=False)
        self._finalizer = weakref.finalize(self, self.db.close)
        # A scratch file: no journal, no fsync; it is rebuilt by rerunning the operation.
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16000;" + self.schema
        )

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM t").fetchone()[0])


class EntrySpool(_Spool):
    """A backup's entries, kept on disk and read back in name order. An entry added as `written`
    (by this run's units) is told apart from one carried over from an earlier backup (`carried`)."""

    schema = (
        "CREATE TABLE t (name TEXT PRIMARY KEY, size INTEGER, body TEXT, written INTEGER NOT NULL DEFAULT 0)"
        " WITHOUT ROWID;"
    )

    def __init__(self, entries: Iterable[ManifestEntry] = ()) -> None:
        super().__init__()
        self.add(entries)

    def add(self, entries: Iterable[ManifestEntry], written: bool = False) -> None:
        self.add_rows(((e.name, e.size, e.model_dump_json()) for e in entries), written)

    def add_rows(self, rows: Iterable[Row], written: bool = False) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?)", ((*row, int(written)) for row in rows)
            )

    def carried(self) -> Iterator[ManifestEntry]:
        """The entries not added as `written`, in name order."""
        cursor = self.db.cursor()
        cursor.arraysize = 1000
        for (body,) in cursor.execute("SELECT body FROM t WHERE written = 0 ORDER BY name"):
            yield ManifestEntry.model_validate_json(body)

    @property
    def total_bytes(self) -> int:
        return int(self.db.execute("SELECT coalesce(sum(size), 0) FROM t").fetchone()[0])

    def rows(self) -> Iterator[Row]:
        """(name, size, JSON) in name order, streamed."""
        cursor = self.db.cursor()  # its own cursor: adding more while reading is not allowed
        cursor.arraysize = 1000
        yield from cursor.execute("SELECT name, size, body FROM t ORDER BY name")

    def __iter__(self) -> Iterator[ManifestEntry]:
        for _, _, body in self.rows():
            yield ManifestEntry.model_validate_json(body)


Held = tuple[int, str | None, str | None]  # (size, crc32c, kms key name) of a stored object


class KeySpool(_Spool):
    """A listing: key -> (size, crc32c, kms key name), and the object's retain-until when the
    listing keeps it (`add_retained`)."""

    schema = "CREATE TABLE t (key TEXT PRIMARY KEY, size INTEGER, crc32c TEXT, kms TEXT, until TEXT) WITHOUT ROWID;"

    def add(self, items: Iterable[tuple[str, int, str | None, str | None]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO t (key, size, crc32c, kms) VALUES (?, ?, ?, ?)", items
            )

    def add_retained(self, items: Iterable[tuple[str, int, str | None, str | None, str | None]]) -> None:
        """Items with the object's retain-until (RFC 3339, as listed; None: not retained)."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?, ?)", items)

    def retained_until(self, keys: list[str]) -> dict[str, datetime]:
        """The retain-until of each of `keys` the listing holds with one."""
        found: dict[str, datetime] = {}
        for start in range(0, len(keys), LOOKUP_BATCH):
            part = keys[start : start + LOOKUP_BATCH]
            query = (
                f"SELECT key, until FROM t WHERE until IS NOT NULL AND key IN ({','.join('?' * len(part))})"
            )
            for key, until in self.db.execute(query, part):
                found[key] = datetime.fromisoformat(until.replace("Z", "+00:00"))
        return found

    def lookup(self, keys: list[str]) -> dict[str, Held]:
        """What the listing says of each of `keys` that it holds."""
        found: dict[str, Held] = {}
        for start in range(0, len(keys), LOOKUP_BATCH):
            part = keys[start : start + LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, size, crc32c, kms FROM t WHERE key IN ({marks})"
            for key, size, crc, kms in self.db.execute(query, part):
                found[key] = (size, crc, kms)
        return found

    def items(self) -> Iterator[tuple[str, Held]]:
        """(key, held) in key order, streamed."""
        cursor = self.db.cursor()
        cursor.arraysize = 1000
        for key, size, crc, kms in cursor.execute("SELECT key, size, crc32c, kms FROM t ORDER BY key"):
            yield key, (size, crc, kms)

    def __contains__(self, key: object) -> bool:
        return self.db.execute("SELECT 1 FROM t WHERE key = ?", (key,)).fetchone() is not None
