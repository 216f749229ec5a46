"""How fast Backstop may write objects into one bucket: Cloud Storage's request-rate guideline as a
schedule. Pure: the caller passes the time (seconds on any monotonic clock); no sleeping, no I/O.

Cloud Storage starts a bucket at about 1,000 object writes per second (uploads, copies, rewrites,
patches and deletes all count) and grows its capacity by redistributing the key index; Google asks
clients to at most double the request rate every 20 minutes and to back off on 429 and 5xx. So:

- a bucket starts at `initial` writes/s;
- the rate doubles when the last `period` seconds ran near it (at least `sustained` of the rate:
  sustained load) without a throttle answer; a short or light run never ramps;
- a throttle (429, 5xx) halves the rate, never below `initial`, and restarts the period;
- a pause longer than a period returns the rate to `initial` (the bucket may have scaled back).

Writes are spaced by 1/rate; after a pause up to `burst` seconds' worth start at once. The backoff
of the failed request itself is the client's retry (see tasks/components/gcs/copy.py), not this schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERIOD_SECONDS = 20 * 60.0  # Google's guideline: at most double every 20 minutes
DEFAULT_RATE = 1000.0  # writes/s a bucket starts at


@dataclass
class WriteRamp:
    """The write-rate schedule of one destination bucket.

    Args:
        initial: writes per second at the start, and the floor after a throttle.
        period: seconds of sustained load before the rate may double.
        sustained: share of the rate the writes must reach over a period for it to double.
        burst: seconds' worth of writes that may start at once after a pause.
    """

    initial: float = DEFAULT_RATE
    period: float = PERIOD_SECONDS
    sustained: float = 0.5
    burst: float = 0.05
    rate: float = field(init=False)
    _next: float | None = field(default=None, init=False)  # when the next write slot opens
    _since: float | None = field(default=None, init=False)  # start of the current period
    _writes: int = field(default=0, init=False)  # writes reserved in the current period
    _last: float | None = field(default=None, init=False)  # the last write reserved

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.period <= 0:
            raise ValueError("a write rate and its period must be positive")
        self.rate = float(self.initial)

    def reserve(self, now: float) -> float:
        """Take one write slot at `now`; returns the seconds to wait before the write starts."""
        if self._last is not None and now - self._last > self.period:
            self._restart(now, float(self.initial))  # idle for a period: start over
        elif self._since is None:
            self._since = now
        elif now - self._since >= self.period:
            busy = self._writes >= self.sustained * self.rate * (now - self._since)
            self._restart(now, self.rate * 2 if busy else self.rate)
        slot = now - self.burst if self._next is None else max(self._next, now - self.burst)
        start = max(now, slot)
        self._next = slot + 1.0 / self.rate
        self._writes += 1
        self._last = start
        return start - now

    def throttled(self, now: float) -> None:
        """The bucket answered 429 or 5xx: halve the rate (not below `initial`), restart the period."""
        self._restart(now, max(float(self.initial), self.rate / 2))

    def _restart(self, now: float, rate: float) -> None:
        self.rate = rate
        self._since = now
        self._writes = 0


@dataclass
class SharedSchedule:
    """The write ramp of one bucket when many processes write to it through one shared rate limit
    (tasks/storage/shared_limit.py): the keeper samples the limit every few seconds and moves its
    rate as `WriteRamp` would. Pure: the caller passes the time and what the limit showed.

    - busy: writers were waiting for slots at the sample (the limit, not the work, was the bound);
    - the rate doubles after a whole `period` of busy samples with no throttle;
    - a rate lower than ours on the limit is a throttle some writer answered (it halved it): taken
      over, and the period restarts; an idle sample restarts it too.
    """

    initial: float = DEFAULT_RATE
    period: float = PERIOD_SECONDS
    rate: float = field(init=False)
    _since: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.period <= 0:
            raise ValueError("a write rate and its period must be positive")
        self.rate = float(self.initial)

    def sample(self, now: float, busy: bool, limit_rate: float) -> float:
        """The rate the shared limit should have after this sample."""
        if limit_rate < self.rate:  # a writer was throttled and halved it
            self.rate = max(float(self.initial), limit_rate)
            self._since = now if busy else None
            return self.rate
        if not busy:
            self._since = None
        elif self._since is None:
            self._since = now
        elif now - self._since >= self.period:
            self.rate *= 2
            self._since = now
        return self.rate
