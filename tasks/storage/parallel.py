"""A thread pool map for I/O-bound calls (listings, reads, deletes) that keeps order, iterators read
ahead on threads of their own (`prefetch`, `prefetch_many`), batching, and
`Batches`: how a long step runs its per-object work (here, or as units on a task runner)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[Any], T], items: list[Any], workers: int = 16) -> list[T]:
    """Run `fn` over `items` on a thread pool, keeping order; the first error propagates."""
    if len(items) <= 1 or workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Each of `calls` on its own thread (a few independent reads or writes); their results in order."""
    return parallel_map(lambda call: call(), list(calls))


def prefetch(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """Iterate `items` on a background thread, at most `depth` ahead (overlaps reading with writing)."""
    return prefetch_many([items], depth)


def prefetch_many(sources: list[Iterator[T]], depth: int = 4) -> Iterator[T]:
    """Items of all `sources`, each iterated on its own thread, merged; at most `depth` wait in memory.

    The first error of any source is raised in the consumer; closing the consumer stops the threads.
    """
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce(items: Iterator[T]) -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)

    threads = [
        threading.Thread(target=produce, args=(src,), name="read-ahead", daemon=True) for src in sources
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            kind, value = buffer.get()
            if kind == "end":
                running -= 1
            elif kind == "error":
                raise value
            else:
                yield value
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


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


def growing_batches(first: int = 1000, most: int = 50_000, units: int = 100) -> Iterator[int]:
    """Batch sizes that grow with the work done: `first` objects while fewer than `units` batches
    are done, then about 1/`units` of what was batched so far, up to `most`. A bucket of any size
    thus runs in a few hundred tasks (10M objects: ~500), and small ones still spread out."""
    done = 0
    while True:
        size = min(most, max(first, done // units))
        yield size
        done += size


def growing(items: Iterable[T], first: int = 1000) -> Iterator[list[T]]:
    """`items` in lists of the sizes `growing_batches(first)` gives, consumed lazily."""
    sizes = growing_batches(first)
    batch: list[T] = []
    size = next(sizes)
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch, size = [], next(sizes)
    if batch:
        yield batch


class Batches:
    """How a long step runs its per-object work (validation's read-back, the secondary copy,
    prune's deletes): `run(fn, items, done)` calls `fn(batch)` on batches of `items` and
    `done(result)` with each result, in this thread.

    This one runs every batch here, one after another (a batch spreads its requests over the
    process's copy workers); the engine's `units.UnitBatches` runs them as units on the settings'
    task runner inside a flow run. So `fn` must be picklable by reference (a module-level function,
    or a `functools.partial` of one over picklable values such as a BackupStore), an item a small
    JSON value (a key, a few numbers: a batch may travel as a work file), and a result small
    (counts, a bounded list of problems)."""

    spread = False  # whether batches run in other processes (their writes then share one rate limit)
    first = 1000  # items in a batch (later batches grow: a few hundred for any size)

    def run(self, fn: Callable[[list[Any]], R], items: Iterable[Any], done: Callable[[R], None]) -> None:
        for batch in growing(items, self.first):
            done(fn(batch))
