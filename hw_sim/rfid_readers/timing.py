"""Replaying time-stamped items at their own pace, sped up by a factor, on the event loop's clock."""

from __future__ import annotations

import asyncio
from datetime import datetime

__all__ = ["ReplayClock"]


class ReplayClock:
    """Maps scenario times onto the loop clock: the first item is due at once, the rest ``Δt / speedup`` later."""

    def __init__(self, speedup: float) -> None:
        assert speedup > 0, "speedup must be positive"
        self._speedup = speedup
        self._origin: datetime | None = None
        self._started = 0.0

    async def wait_until(self, moment: datetime) -> None:
        """Sleep until ``moment`` (a scenario time) is due; at once if it is already past."""
        loop = asyncio.get_running_loop()
        if self._origin is None:
            self._origin, self._started = moment, loop.time()
            return
        due = self._started + (moment - self._origin).total_seconds() / self._speedup
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
