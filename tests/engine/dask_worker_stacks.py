"""Preloaded into the Dask workers the tests start (tests/engine/conftest.py): a worker still
running STACKS_AFTER seconds after it started prints every thread's stack to its stderr, which
pytest shows with the failed test. A unit that never finished on a worker (seen twice in CI, not
reproduced since) then says where it waits."""

from __future__ import annotations

import faulthandler
import os
import sys
from typing import Any

STACKS_AFTER = float(
    os.environ.get("BACKSTOP_TEST_WORKER_STACKS_AFTER") or 240
)  # under the 300 s test timeout


def dask_setup(worker: Any) -> None:
    faulthandler.dump_traceback_later(STACKS_AFTER, file=sys.stderr)
