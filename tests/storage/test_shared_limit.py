"""The shared write limit on a Prefect server (tasks/storage/shared_limit.py): what a later run finds."""

from __future__ import annotations

import pytest

from tasks.storage import shared_limit
from tests.conftest import unique

pytestmark = [pytest.mark.flow]


def test_a_new_run_starts_with_an_empty_queue_whatever_an_earlier_run_left(prefect_harness: None) -> None:
    bucket, rate = unique("limit"), 100.0
    shared_limit.prepare(bucket, rate)
    slots = shared_limit.SharedSlots(bucket, rate)
    for _ in range(3 * shared_limit.block_for(rate)):  # three blocks: the third waits behind the burst
        slots.take()
    # and writers that were still queued when the run ended: 1,000 slots, 10 s of writes at 100/s (a
    # few queued blocks alone may drain before a loaded machine reads the limit again)
    with shared_limit._client() as client:
        client.increment_concurrency_slots(
            names=[shared_limit.limit_name(bucket)], slots=1000, mode="rate_limit"
        )
    shared_limit.stop(bucket)
    left = shared_limit.read_rate(bucket)
    assert left is not None and left[1] > 500, left  # queued when the run ended

    shared_limit.prepare(bucket, 10.0)  # a later run, at a lower rate: its writers must not wait that out
    try:
        assert shared_limit.read_rate(bucket)[:2] == (10.0, 0)  # type: ignore[index]
    finally:
        shared_limit.stop(bucket)
