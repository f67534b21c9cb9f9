"""Capped exponential backoff with full jitter, for every retry and reconnect loop of the agent."""

from __future__ import annotations

import random


class Backoff:
    """Delay n is uniform in [0, min(max, initial * 2**n)] ("full jitter"), so a fleet of gateways
    reconnecting after a cloud restart spreads out instead of arriving together."""

    def __init__(self, *, delay_ms_initial: int, delay_ms_max: int, rng: random.Random) -> None:
        assert 0 < delay_ms_initial <= delay_ms_max
        self._initial_ms = delay_ms_initial
        self._max_ms = delay_ms_max
        self._rng = rng
        self.attempt = 0

    def next_delay_s(self) -> float:
        ceiling_ms = min(self._max_ms, self._initial_ms * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        # Never below a tenth of the initial delay: a zero delay would spin against a dead peer.
        return max(self._initial_ms / 10, self._rng.uniform(0, ceiling_ms)) / 1000

    def reset(self) -> None:
        self.attempt = 0
