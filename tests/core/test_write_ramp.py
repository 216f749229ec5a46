"""The write ramp of one bucket (Cloud Storage's request-rate guideline), on an injected clock."""

from __future__ import annotations

import pytest

from backstop.core.write_ramp import WriteRamp

pytestmark = pytest.mark.unit

MINUTE = 60.0


def run(ramp: WriteRamp, start: float, seconds: float, per_second: float) -> float:
    """For `seconds`, a writer offering `per_second` writes a second that waits as told; returns the clock."""
    now = start
    while now < start + seconds:
        now += ramp.reserve(now) + 1.0 / per_second
    return now


def test_writes_are_spaced_to_the_starting_rate_after_a_short_burst() -> None:
    ramp = WriteRamp(initial=100, burst=0.05)
    waits = [ramp.reserve(0.0) for _ in range(26)]
    assert waits[:6] == pytest.approx([0.0] * 6) and waits[6] > 0.005  # burst: 0.05 s at 100/s, then a wait
    assert waits[-1] == pytest.approx(0.2)  # then one write every 10 ms
    assert ramp.rate == 100


def test_rate_doubles_at_most_once_per_period_of_sustained_load() -> None:
    ramp = WriteRamp(initial=10, period=20 * MINUTE)
    now = run(ramp, 0.0, 19 * MINUTE, 20)  # offered twice the rate: sustained, waits for slots
    assert ramp.rate == 10  # not yet a period
    now = run(ramp, now, 2 * MINUTE, 20)
    assert ramp.rate == 20  # one doubling after 20 minutes
    now = run(ramp, now, 10 * MINUTE, 40)
    assert ramp.rate == 20  # never twice within a period
    run(ramp, now, 11 * MINUTE, 40)
    assert ramp.rate == 40


def test_light_load_never_ramps_and_a_pause_starts_over() -> None:
    ramp = WriteRamp(initial=10, period=20 * MINUTE)
    now = run(ramp, 0.0, 45 * MINUTE, 2)  # a fifth of the rate: not sustained
    assert ramp.rate == 10
    now = run(ramp, now, 41 * MINUTE, 20)
    assert ramp.rate == 40
    ramp.reserve(now + 21 * MINUTE)  # idle for longer than a period: the bucket may have scaled back
    assert ramp.rate == 10


def test_a_throttle_halves_the_rate_not_below_the_start_and_restarts_the_period() -> None:
    ramp = WriteRamp(initial=10, period=20 * MINUTE)
    now = run(ramp, 0.0, 41 * MINUTE, 20)
    assert ramp.rate == 40
    ramp.throttled(now)
    assert ramp.rate == 20
    ramp.throttled(now)
    ramp.throttled(now)
    assert ramp.rate == 10
    now = run(ramp, now, 19 * MINUTE, 20)
    assert ramp.rate == 10  # the period restarted at the throttle
    run(ramp, now, 2 * MINUTE, 20)
    assert ramp.rate == 20


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        WriteRamp(initial=0)
