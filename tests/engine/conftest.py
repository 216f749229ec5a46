from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def dask_worker_stacks() -> Iterator[None]:
    """Every Dask worker these tests start prints its threads' stacks if it is still running after
    a few minutes (tests/engine/dask_worker_stacks.py)."""
    import dask

    with dask.config.set(
        {"distributed.worker.preload": [str(Path(__file__).with_name("dask_worker_stacks.py"))]}
    ):
        yield
