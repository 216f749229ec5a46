"""Content digests of BigQuery tables, hashed a record batch at a time from the Arrow buffers.

Pure (no I/O, no Prefect): unit-tested without an emulator.

What a digest means. A table's digest `rows:sum:xor` (TableDigest) is the row count and the sum
(mod 2^64) and xor of one 64-bit hash per row. Two tables with the same rows, as a multiset, have the
same digest whatever order they are read in and however the rows are split into record batches, part
files or Parquet row groups: a row's hash depends on that row alone. A row hash covers every column in
order: its name, its type family and its value, recursively into RECORDs (field names too) and
REPEATED fields (element order and count). A changed fixed-width value (INT64, NUMERIC, FLOAT64,
DATE, TIMESTAMP, ...) always changes its row's hash, and so the digest: each step below is a
bijection of that value given the rest. Any other change (a text, an array, a RECORD, a NULL, several
values) goes unnoticed only by a 64-bit accident, about 2^-64. NULL, an empty string, an empty array
and NaN hash apart. Equal values compare equal across Arrow widths of one family (INT64
read as int32, string as large_string, float32 as float64); NaNs are one value and -0.0 equals 0.0.
It is an integrity check, not a cryptographic one: someone who can write the backup can forge it.

How. Per column, vectorised with numpy over the batch's buffers: fixed-width values (integers, BOOL,
DATE, TIME, TIMESTAMP, FLOAT64, NUMERIC and BIGNUMERIC as their 16 / 32 bytes) are mixed 64 bits at a
time with the splitmix64 finaliser, salted by their type family; STRING / BYTES / JSON / GEOGRAPHY text
are hashed 8 bytes at a time (each word mixed with its position, summed per value, mixed with the
length); arrays mix each element's hash with its position and sum per row; RECORDs combine their fields
as a row does. Nothing goes through Python objects.

Schemes. The manifest entry of a table records `digest_scheme`:
- 1 (entries without the key, written before December 2026): `tasks.components.bigquery.schema.row_hashes`,
  pandas' hash per value and canonical JSON text for NUMERIC, BYTES, arrays and RECORDs. Kept only to
  verify those backups.
- 2: this module.
Both use the same TableDigest; a digest is only ever compared with one of its own scheme.

Row-group digests. Since December 2026 a Parquet part entry also records `group_digests`: one
TableDigest per row group of that file, in file order, in the table's scheme, taken from the rows
as they were read from the source (GroupDigests, beside the table's digest). They add up (rows and
sums added, xors xored: `combined`) to the table's `content_digest`, and each one's row count is
its row group's. Validation right after a backup decodes and hashes a random sample of row groups
against them instead of every row (the files' bytes are checked whole by their crc32c); a backup
without them is checked row by row as before.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa

from tasks.components.bigquery.schema import RowHasher, TableDigest

DIGEST_SCHEME = 2
SCHEMES = (1, 2)
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x6A09E667F3BCC909)
_ROW = np.uint64(1_000_003)
# Rows of a text column hashed at once: bounds the temporary word arrays (~8 x 1M x 8 bytes).
_WORDS_PER_PASS = 1 << 20
# Text values of up to this many 8-byte words are hashed a word position at a time (faster).
_DENSE_WORDS = 8


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise (a bijection of 64-bit words); `values` is overwritten."""
    values ^= values >> np.uint64(30)
    values *= _C1
    values ^= values >> np.uint64(27)
    values *= _C2
    values ^= values >> np.uint64(31)
    return values


@lru_cache(maxsize=256)
def salt(text: str) -> np.uint64:
    """A stable 64-bit number for a name or type family."""
    return np.uint64(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))


def _family(kind: pa.DataType) -> str:
    """Types that hold the same values alike: every integer width, float width, text and byte width."""
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return "binary"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "list"
    return str(kind).split("[")[0].split("(")[0].split("<")[0]


def _values(array: pa.Array, dtype: str, lanes: int = 1) -> np.ndarray:
    """The data buffer of a fixed-width array as numpy (zero copy; null slots hold anything)."""
    width = np.dtype(dtype).itemsize * lanes
    buffer = array.buffers()[1]
    return np.frombuffer(buffer, dtype=dtype, count=len(array) * lanes, offset=array.offset * width)


def _lanes(array: pa.Array) -> np.ndarray:
    """A fixed-width array as 64-bit words, shape (rows, lanes), values normalised within the family."""
    kind = array.type
    if pa.types.is_boolean(kind):
        bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder="little")
        return bits[array.offset : array.offset + len(array)].astype(np.uint64)[:, None]
    if pa.types.is_floating(kind):
        floats = _values(array, f"<f{kind.bit_width // 8}").astype(np.float64)
        floats[np.isnan(floats)] = np.nan  # one NaN
        floats += 0.0  # -0.0 == 0.0
        return floats.view(np.uint64)[:, None]
    if pa.types.is_date64(kind):
        array = array.cast(pa.date32())
    width = kind.bit_width
    if width in (8, 16, 32, 64):
        signed = not pa.types.is_unsigned_integer(kind)
        ints = _values(array, f"<{'i' if signed else 'u'}{width // 8}").astype(np.int64)
        return ints.view(np.uint64)[:, None]
    if width % 64 == 0:  # decimal128 / decimal256, month_day_nano_interval, fixed_size_binary(16) ...
        lanes = width // 64
        return _values(array, "<u8", lanes).reshape(len(array), lanes)
    raise TypeError(f"no digest for Arrow type {kind}")


def _fixed_hash(array: pa.Array, family: np.uint64) -> np.ndarray:
    lanes = _lanes(array)
    out = np.full(len(array), family, dtype=np.uint64)
    for lane in range(lanes.shape[1]):
        out += lanes[:, lane]
        mix64(out)
    return out


def _segment_sum(terms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum of consecutive runs of `terms` of the given lengths (zero for an empty run)."""
    sums = np.zeros(len(counts), dtype=np.uint64)
    filled = counts > 0
    if terms.size:
        starts = np.cumsum(counts) - counts
        sums[filled] = np.add.reduceat(terms, starts[filled])
    return sums


def _positions(counts: np.ndarray) -> np.ndarray:
    """0, 1, ... within each run of the given lengths."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def _bytes_hash(array: pa.Array, family: np.uint64) -> np.ndarray:
    """Text or bytes: 8-byte little-endian words, each mixed with its position, summed, then mixed
    with the length."""
    kind = array.type
    if pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        array = array.cast(pa.large_binary())
        kind = array.type
    large = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
    width = 8 if large else 4
    offsets = np.frombuffer(
        array.buffers()[1], dtype=f"<i{width}", count=len(array) + 1, offset=array.offset * width
    ).astype(np.int64)
    base = int(offsets[0])
    data_buffer = array.buffers()[2]
    data = (
        np.frombuffer(data_buffer, np.uint8)[base : int(offsets[-1])]
        if data_buffer
        else np.zeros(0, np.uint8)
    )
    padded = np.zeros(len(data) + 8, np.uint8)
    padded[: len(data)] = data
    # every byte position as the start of a little-endian 64-bit word (a strided view, no copy)
    words_at = np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    starts, lengths = offsets[:-1] - base, np.diff(offsets)
    counts = (lengths + 7) // 8
    ends = np.cumsum(counts)
    if counts.size and int(counts.max()) <= _DENSE_WORDS:
        return _short_bytes_hash(words_at, starts, lengths, counts, family)
    out = np.empty(len(array), dtype=np.uint64)
    lo = 0
    while lo < len(array):  # rows in passes of about _WORDS_PER_PASS words
        done = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, done + _WORDS_PER_PASS, side="right")))
        n = counts[lo:hi]
        k = _positions(n)
        row = np.repeat(np.arange(hi - lo), n)
        at = starts[lo:hi][row] + 8 * k
        words = words_at[at]
        left = lengths[lo:hi][row] - 8 * k  # bytes of this value from the word on: keep at most 8
        short = left < 8
        words[short] &= (np.uint64(1) << (8 * left[short]).astype(np.uint64)) - np.uint64(1)
        words ^= (k.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        total = _segment_sum(mix64(words), n)
        total += lengths[lo:hi].astype(np.uint64) * _C1 + family
        out[lo:hi] = mix64(total)
        lo = hi
    return out


def _short_bytes_hash(
    words_at: np.ndarray, starts: np.ndarray, lengths: np.ndarray, counts: np.ndarray, family: np.uint64
) -> np.ndarray:
    """_bytes_hash of values of at most _DENSE_WORDS words, word position by word position over
    all values at once (the same hashes: no per-word index arrays to build)."""
    total = lengths.astype(np.uint64) * _C1 + family
    for k in range(int(counts.max())):
        rows = None if int(counts.min()) > k else np.flatnonzero(counts > k)
        at = starts + 8 * k if rows is None else starts[rows] + 8 * k
        left = (lengths if rows is None else lengths[rows]) - 8 * k
        words = words_at[at]
        short = left < 8
        if short.any():
            words[short] &= (np.uint64(1) << (8 * left[short]).astype(np.uint64)) - np.uint64(1)
        words ^= np.uint64((k + 1) * int(_GOLDEN) & 0xFFFF_FFFF_FFFF_FFFF)
        if rows is None:
            total += mix64(words)
        else:
            total[rows] += mix64(words)
    return mix64(total)


def _list_hash(array: pa.Array, family: np.uint64) -> np.ndarray:
    """Arrays: each element's hash mixed with its position, summed per row, mixed with the length."""
    if pa.types.is_fixed_size_list(array.type):
        size = array.type.list_size
        offsets = (np.arange(len(array) + 1, dtype=np.int64) + array.offset) * size
    else:
        offsets = array.offsets.to_numpy().astype(np.int64)
    child = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    counts = np.diff(offsets)
    elements = column_hash(child)
    k = _positions(counts).astype(np.uint64)
    elements ^= (k + np.uint64(1)) * _GOLDEN
    total = _segment_sum(mix64(elements), counts)
    total += counts.astype(np.uint64) * _C2 + family
    return mix64(total)


def _struct_hash(array: pa.StructArray, family: np.uint64) -> np.ndarray:
    out = np.full(len(array), np.uint64(array.type.num_fields) + family, dtype=np.uint64)
    for i in range(array.type.num_fields):
        field = array.type.field(i)
        out *= _ROW
        out ^= column_hash(array.field(i)) + salt(field.name)
    return mix64(out)


def column_hash(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One 64-bit hash per value of `array` (NULLs: a constant)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if len(array) == 0:
        return np.zeros(0, dtype=np.uint64)
    if isinstance(kind, pa.ExtensionType):
        array, kind = array.storage, kind.storage_type
    if pa.types.is_dictionary(kind):
        out = column_hash(array.dictionary)[array.indices.fill_null(0).to_numpy()]
    elif pa.types.is_null(kind):
        return np.full(len(array), _NULL, dtype=np.uint64)
    else:
        family = salt(_family(kind))
        if pa.types.is_struct(kind):
            out = _struct_hash(array, family)
        elif _family(kind) in ("list", "map"):
            out = _list_hash(array, family)
        elif _family(kind) in ("string", "binary"):
            out = _bytes_hash(array, family)
        else:
            out = _fixed_hash(array, family)
    if array.null_count:
        out[~array.is_valid().to_numpy(zero_copy_only=False)] = _NULL
    return out


def row_hashes(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """One 64-bit hash per row over every column (names, order, type families and values count)."""
    out = np.full(batch.num_rows, np.uint64(batch.num_columns), dtype=np.uint64)
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        out *= _ROW
        out ^= column_hash(column) + salt(name)
    return mix64(out)


def row_hasher(scheme: int = DIGEST_SCHEME) -> Callable[[pa.RecordBatch | pa.Table], np.ndarray]:
    """The row-hash function of digest scheme `scheme` (one per table read: scheme 1's keeps state)."""
    if scheme == 1:
        return RowHasher()
    if scheme == 2:
        return row_hashes
    raise ValueError(f"unknown BigQuery digest scheme {scheme!r} (this Backstop knows {SCHEMES})")


def digest_scheme(metadata: dict[str, object]) -> int:
    """The digest scheme of a table entry's metadata (1 for entries written before schemes were recorded)."""
    return int(str(metadata.get("digest_scheme") or 1))


def parse_digest(text: str) -> TableDigest:
    """The TableDigest of a `rows:sum:xor` hexdigest (ValueError when malformed)."""
    rows, total, xor = text.split(":")
    return TableDigest(int(rows), int(total, 16), int(xor, 16))


def combined(digests: Iterable[str]) -> str:
    """The digest of the rows of several digests together (rows and sums added, xors xored)."""
    out = TableDigest()
    for part in map(parse_digest, digests):
        out.rows += part.rows
        out.total = (out.total + part.total) & 0xFFFF_FFFF_FFFF_FFFF
        out.xor ^= part.xor
    return out.hexdigest


@dataclass
class GroupDigests(TableDigest):
    """A table's digest and one digest per row group of each part file, as row hashes stream in.

    The writer says where row groups end (`end_group`, part by part, in row order); hashes come in
    that same row order, possibly later (hashing runs beside the writer): a group's digest is
    closed as soon as the hashes of its last row are in.
    """

    parts: list[list[str]] = field(default_factory=list)
    _ends: deque[tuple[int, int]] = field(default_factory=deque)  # (row after the group, its part)
    _ended: int = 0  # rows of the groups ended so far
    _at: int = 0  # rows hashed so far
    _open: TableDigest = field(default_factory=TableDigest)

    def end_group(self, part: int, rows: int) -> None:
        """The next `rows` rows (after those of earlier groups) form one row group of part `part`."""
        self._ended += rows
        self._ends.append((self._ended, part))

    def add(self, hashes: np.ndarray) -> None:
        super().add(hashes)
        while True:
            while self._ends and self._ends[0][0] == self._at:  # every row of the group is in
                self._close(self._ends.popleft()[1])
            if not hashes.size:
                return
            if not self._ends or self._ends[0][0] > self._at + hashes.size:  # the group goes on
                self._open.add(hashes)
                self._at += int(hashes.size)
                return
            cut = self._ends[0][0] - self._at
            self._open.add(hashes[:cut])
            hashes, self._at = hashes[cut:], self._at + cut

    def _close(self, part: int) -> None:
        while len(self.parts) <= part:
            self.parts.append([])
        self.parts[part].append(self._open.hexdigest)
        self._open = TableDigest()

    def finish(self) -> None:
        """Check that every row hashed belongs to an ended group and every group got its rows."""
        self.add(np.zeros(0, dtype=np.uint64))
        if self._ends or self._open.rows or self._at != self._ended:
            raise RuntimeError(f"row groups cover {self._ended} rows, {self._at} were hashed")


__all__ = [
    "DIGEST_SCHEME",
    "GroupDigests",
    "TableDigest",
    "combined",
    "parse_digest",
    "column_hash",
    "digest_scheme",
    "row_hasher",
    "row_hashes",
]
