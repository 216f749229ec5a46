"""One write rate per destination bucket across every process that writes to it: Prefect's global
concurrency limits used as a rate limit (slot decay), held by the Prefect server.

When a step fans out over a Dask cluster, every worker process copies into the same bucket; a
per-process ramp would let N workers write N times the bucket's rate. Instead:

- the process that plans the step (the flow run) calls `prepare(bucket, rate)`: it creates (or
  resets) the limit `backstop-writes-<bucket>` with `slot_decay_per_second` = the rate, and starts a
  keeper thread that moves that rate as the ramp says (backstop/core/write_ramp.py SharedSchedule:
  doubled after a whole period in which writers kept taking slots, taken down when a writer halved
  it after a 429 / 5xx). "Kept taking slots" is read from the limit's record (updated at every
  take): the server does not say how many writes were wanted, so a period of steady use counts as
  sustained load, where the per-process ramp asks for half the rate;
- every writer takes its slots in blocks (`SharedSlots`): two requests to the server (add, read) per
  block of about a tenth of a second's writes, never one per object;
- a writer answered 429 / 5xx halves the limit's rate on the server (`throttled`), for all writers.

How a block is taken: the limit's slots are a queue that drains at the rate. A writer adds its block
(always accepted: the limit's `limit` is the largest the server stores, as the queue holds at most a
block per writer), reads the queue's length right after, and waits until what is ahead of its block
fits in the burst (BURST_BLOCKS blocks). So over any window of W seconds the writers together start
at most rate x W writes, plus that burst, plus the one block each writer may hold unused. `prepare`
empties the queue: slots an earlier run left would otherwise drain at a rate they were not taken at.

Why not `prefect.concurrency.sync.rate_limit` (ask for room, and on a refusal retry after the
server's Retry-After): the server records a refused request as an update of the limit that drains
no slots (`bulk_update_denied_slots`), so writers asking while the limit is full keep it full.
Measured side by side (bench/bench_shared_limit.py, 1-4 writer processes at 100 and 1,000 writes/s):
59-91% of the rate that way, 93-105% this way.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from backstop.core.write_ramp import PERIOD_SECONDS, SharedSchedule

PREFIX = "backstop-writes-"
BLOCK_SECONDS = 0.1  # writes taken per request to the server: a tenth of a second's worth
MIN_BLOCK = 10  # the server drains whole slots at each update: blocks of 10 or more lose at most ~5%
BURST_BLOCKS = 2  # blocks that may start at once: a writer's next block is not a full wait away
NO_CAP = 2**31 - 1  # the limit's `limit`: the largest integer the server's database stores
CHECK_SECONDS = 5.0  # how often the keeper samples the limit
IDLE_STOP_SECONDS = 120.0  # a keeper whose limit saw no writer for this long stops

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_keepers: dict[str, _Keeper] = {}


def limit_name(bucket: str) -> str:
    return f"{PREFIX}{bucket}"


def block_for(rate: float) -> int:
    """Slots taken per request to the server at `rate` writes/s."""
    return max(MIN_BLOCK, math.ceil(rate * BLOCK_SECONDS))


def burst_for(rate: float) -> int:
    """Writes that may start at once (the queue's length a block may start at) at `rate` writes/s."""
    return BURST_BLOCKS * block_for(rate)


def _client() -> Any:
    from prefect.client.orchestration import get_client

    # A client of our own (not the run's, which `with` would close): httpx_settings set on purpose.
    return get_client(sync_client=True, httpx_settings={})


BUSY_WAITS = (0.05, 1.0, 60.0)  # a busy server: first wait, longest wait, give up after (seconds)
BUSY_STATUSES = {429, 502, 503}


def _once(client: Any, method: str, path: str, **request: Any) -> Any:
    """One request to the Prefect API through `client` (Prefect's: its URL, headers and auth),
    answered or raised, tried again soon while the server is busy: the `httpx.Response`.

    A server on SQLite (the local platform's) answers 503 at once while another write holds the
    database. Prefect's client sleeps 2**n s after every busy answer (2, 4, 8, 16 s), even when
    told to try once; a writer waiting there holds every copy thread of its process (they wait
    on its block): one busy answer stalled a worker's copies for seconds. Here a busy answer is
    tried again after 50 ms, doubling up to 1 s, for up to 60 s; any other error is raised at once.
    A request the server answered busy changed nothing (its transaction did not commit).
    """
    import httpx

    wait, longest, give_up = BUSY_WAITS
    deadline = time.monotonic() + give_up
    http = client._client  # Prefect's httpx client: base URL, auth and headers set
    while True:
        try:
            # httpx's own send, not Prefect's (which retries with its own waits)
            answer = httpx.Client.send(http, http.build_request(method, path, **request))
            if answer.status_code not in BUSY_STATUSES:
                answer.raise_for_status()
                return answer
        except httpx.TransportError:
            if time.monotonic() + wait > deadline:
                raise
        else:
            if time.monotonic() + wait > deadline:
                answer.raise_for_status()
        time.sleep(wait)
        wait = min(longest, 2 * wait)


def _set(client: Any, bucket: str, rate: float, create: bool) -> None:
    """Give the bucket's limit `rate`; with `create`, made when missing and its queue emptied."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists

    shape: dict[str, Any] = {
        "limit": NO_CAP,
        "slot_decay_per_second": rate,
        "active": True,
    }
    if create:
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name(bucket), **shape)
            )
            return
        except ObjectAlreadyExists:
            shape["active_slots"] = 0
    client.update_global_concurrency_limit(limit_name(bucket), GlobalConcurrencyLimitUpdate(**shape))


def _record(client: Any, bucket: str) -> dict[str, Any] | None:
    """The bucket's limit as the server holds it (slots as of its last update); None when absent."""
    import httpx

    try:
        answer = _once(client, "GET", f"/v2/concurrency_limits/{quote(limit_name(bucket), safe='')}")
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise
    record: dict[str, Any] = answer.json()
    return record


def read_rate(bucket: str) -> tuple[float, int, float] | None:
    """(writes/s, slots held, seconds since a writer last took slots) of the bucket's limit on the
    server; None when absent."""
    with _client() as client:
        limit = _record(client, bucket)
    if limit is None:
        return None
    taken = datetime.fromisoformat(limit["updated"].replace("Z", "+00:00"))
    since = (datetime.now(UTC) - taken).total_seconds()
    return float(limit["slot_decay_per_second"]), int(limit["active_slots"]), since


PERIOD = PERIOD_SECONDS  # the ramp's doubling period (tests shorten it)


def prepare(bucket: str, rate: float) -> None:
    """Create or reset the bucket's shared limit at `rate` (unless a keeper of this process already
    ramps it) and keep ramping it while writers use it."""
    with _lock:
        keeper = _keepers.get(bucket)
        if keeper is not None and keeper.alive() and keeper.schedule.initial == rate:
            return
        with _client() as client:
            _set(client, bucket, rate, create=True)
        keeper = _keepers[bucket] = _Keeper(bucket, SharedSchedule(rate, PERIOD))
        keeper.start()


def stop(bucket: str) -> None:
    """Stop this process's keeper of `bucket` (the limit stays on the server at its last rate)."""
    with _lock:
        keeper = _keepers.pop(bucket, None)
    if keeper is not None:
        keeper.halt.set()


class _Keeper(threading.Thread):
    def __init__(self, bucket: str, schedule: SharedSchedule) -> None:
        super().__init__(name=f"backstop-ramp-{bucket}", daemon=True)
        self.bucket, self.schedule = bucket, schedule
        self.halt = threading.Event()
        # Prefect's settings (the API to talk to) are context variables: a thread starts without them.
        self.context = contextvars.copy_context()

    def run(self) -> None:
        self.context.run(self._run)

    def interval(self) -> float:
        return min(CHECK_SECONDS, self.schedule.period / 4)

    def alive(self) -> bool:
        return self.is_alive() and not self.halt.is_set()

    def _run(self) -> None:
        idle_since = time.monotonic()
        failures = 0
        while not self.halt.wait(self.interval()):
            try:
                seen = read_rate(self.bucket)
                if seen is None:
                    return
                rate, held, since = seen
                now = time.monotonic()
                # In use: the slots writers queued at their last take (the record as of then) last
                # until about now, give or take a sample. At a low rate a block of MIN_BLOCK slots
                # covers seconds; the record's creation and the keeper's own updates of the rate
                # touch it too, but hold no slots.
                busy = held > 0 and since <= held / rate + 2 * self.interval()
                if busy:
                    idle_since = now
                elif now - idle_since > IDLE_STOP_SECONDS:
                    return
                wanted = self.schedule.sample(now, busy, rate)
                if wanted != rate:
                    with _client() as client:
                        _set(client, self.bucket, wanted, create=False)
                    _log.info("gs://%s: shared write rate now %.0f/s (was %.0f/s)", self.bucket, wanted, rate)
                failures = 0
            except Exception as exc:  # the server away for a moment: the limit stays as it is
                failures += 1
                if failures >= 3:  # gone: the ramp stops moving (the writers fail on their own)
                    return
                _log.warning("shared write rate of gs://%s not checked: %s", self.bucket, exc)


class SharedSlots:
    """A writer's side of the bucket's shared limit: `take()` before each write."""

    def __init__(self, bucket: str, rate: float) -> None:
        self.bucket, self.name = bucket, limit_name(bucket)
        self._lock = threading.Lock()
        self._left = 0
        self._block = block_for(rate)
        # Made where the task runs; the copies run on worker threads, which start without the task's
        # context variables (Prefect's settings: which API to talk to): calls run in a copy of it.
        self._context = contextvars.copy_context()

    def take(self) -> None:
        with self._lock:  # one request for the block, the other threads wait for it
            if self._left == 0:
                self._left = self._context.copy().run(self._acquire)
            self._left -= 1

    def _acquire(self) -> int:
        """Add a block to the queue and wait for its turn; the slots it holds."""
        taken = self._block
        with _client() as client:  # one client (a TLS context, ~15 ms to make) for both requests
            _once(
                client,
                "POST",
                "/v2/concurrency_limits/increment",
                json={"names": [self.name], "slots": taken, "mode": "rate_limit"},
            )
            added = time.monotonic()
            limit = _record(client, self.bucket)
        if limit is None:
            raise RuntimeError(f"the shared write limit {self.name} is gone from the Prefect server")
        rate = float(limit["slot_decay_per_second"])
        # The queue's length right after the block was added (blocks added since only make it
        # longer: the wait is never too short) drains at the rate; the block starts once what is
        # ahead of it fits in the burst. The server's clock is not read: the time since the answer
        # is less than the time since the server added the block.
        wait = (int(limit["active_slots"]) - burst_for(rate)) / rate - (time.monotonic() - added)
        self._block = block_for(rate)  # the next block follows the rate; this one holds what it took
        if wait > 0:
            time.sleep(wait)
        return taken

    def throttled(self, floor: float) -> None:
        """A write was answered 429 / 5xx: halve the shared rate (not below `floor`)."""
        self._context.copy().run(self._halve, floor)

    def _halve(self, floor: float) -> None:
        with _client() as client:
            limit = _record(client, self.bucket)
            if limit is not None:
                _set(client, self.bucket, max(floor, float(limit["slot_decay_per_second"]) / 2), create=False)
