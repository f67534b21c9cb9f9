"""Reconnect backoff: capped exponential ceiling, full jitter, reset after success."""

from __future__ import annotations

import random

from edge.backoff import Backoff


def test_delays_stay_under_a_doubling_ceiling_capped_at_max() -> None:
    backoff = Backoff(delay_ms_initial=100, delay_ms_max=1000, rng=random.Random(3))
    delays_ms = [backoff.next_delay_s() * 1000 for _ in range(40)]
    ceilings_ms = [min(1000, 100 * 2**attempt) for attempt in range(40)]
    assert all(10 <= delay <= ceiling for delay, ceiling in zip(delays_ms, ceilings_ms, strict=True))
    assert max(delays_ms[5:]) > 500  # the jitter spreads over the whole capped range
    assert len({round(d) for d in delays_ms}) > 20  # jittered, not lockstep


def test_reset_starts_again_from_the_initial_ceiling() -> None:
    backoff = Backoff(delay_ms_initial=100, delay_ms_max=10_000, rng=random.Random(5))
    for _ in range(10):
        backoff.next_delay_s()
    backoff.reset()
    assert backoff.next_delay_s() <= 0.1
