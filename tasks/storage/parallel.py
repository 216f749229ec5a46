"""A thread pool map for I/O-bound calls (listings, reads, deletes) that keeps order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def parallel_map(fn: Callable[[Any], T], items: list[Any], workers: int = 16) -> list[T]:
    """Run `fn` over `items` on a thread pool, keeping order; the first error propagates."""
    if len(items) <= 1 or workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of at most `size`, consumed lazily (itertools.batched is Python 3.12+)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
