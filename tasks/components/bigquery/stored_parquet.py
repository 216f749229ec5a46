"""Stored Parquet files of a BigQuery backup read by range: the footer (the row count, the row groups),
and chosen row groups into a sparse local copy (validation reads a sample of a table's bytes, not all of them).

Every Google call has a timeout and a bounded retry and converts its errors.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import pyarrow.parquet as pq

from tasks.storage.google_api import RETRY, TIMEOUT, converted_errors


def remote_footer(store: Any, key: str, size: int) -> bytes:
    """The footer of a stored Parquet file of `size` bytes, with its length and closing magic (the
    file's last bytes): two small ranged reads, no data pages."""
    blob = store.bucket.blob(key)
    with converted_errors(f"reading the Parquet footer of {store.where(key)}"):
        tail = blob.download_as_bytes(
            start=max(0, size - 8), end=size - 1, timeout=TIMEOUT, retry=RETRY, checksum=None
        )
        if len(tail) != 8 or tail[4:] != b"PAR1":
            raise ValueError("no Parquet footer magic")
        (length,) = struct.unpack("<I", tail[:4])
        if length + 12 > size:
            raise ValueError(f"footer length {length} exceeds the file size {size}")
        footer = blob.download_as_bytes(
            start=size - 8 - length, end=size - 9, timeout=TIMEOUT, retry=RETRY, checksum=None
        )
    return footer + tail


def footer_metadata(footer: bytes) -> pq.FileMetaData:
    """The file metadata (row count, row groups) of a footer `remote_footer` read."""
    return pq.read_metadata(io.BytesIO(b"PAR1" + footer))


def row_group_span(meta: pq.FileMetaData, index: int) -> tuple[int, int]:
    """The bytes [start, end) of row group `index` of a Parquet file: its column chunks, dictionary
    pages included."""
    group = meta.row_group(index)
    starts, ends = [], []
    for column in range(group.num_columns):
        chunk = group.column(column)
        start = chunk.data_page_offset
        if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
            start = min(start, chunk.dictionary_page_offset)
        starts.append(start)
        ends.append(start + chunk.total_compressed_size)
    return min(starts), max(ends)


def fetch_row_groups(
    store: Any, key: str, groups: list[int], path: str, footer: bytes | None = None
) -> str | None:
    """Read back row groups `groups` of the stored Parquet file `key` into a local sparse file `path`
    of its size, with its footer, and return the crc32c Cloud Storage reports for the stored file.

    Only the footer and those groups' bytes are downloaded (by range): validation reads a sample of
    a table's bytes, not all of them. The local file reads as the stored one for those row groups;
    its other bytes are zeros. `footer`: the file's footer, already read at its stored size (it is
    read here otherwise)."""
    blob = store.stat(key)
    if blob is None:
        raise ValueError(f"{store.where(key)} is missing")
    size = int(blob.size or 0)
    footer = footer if footer is not None else remote_footer(store, key, size)
    meta = footer_metadata(footer)
    with open(path, "wb") as handle:
        handle.truncate(size)
        handle.write(b"PAR1")
        for index in groups:
            if index >= meta.num_row_groups:  # the row-group check names a file with fewer groups
                continue
            start, end = row_group_span(meta, index)
            with converted_errors(f"reading row group {index} of {store.where(key)}"):
                data = blob.download_as_bytes(
                    start=start, end=end - 1, timeout=TIMEOUT, retry=RETRY, checksum=None
                )
            if len(data) != end - start:
                raise ValueError(f"row group {index} read back {len(data)} of its {end - start} bytes")
            handle.seek(start)
            handle.write(data)
        handle.seek(size - len(footer))
        handle.write(footer)
    return blob.crc32c
