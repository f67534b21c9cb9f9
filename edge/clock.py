"""The agent's clock, passed to everything that reads time so tests and the simulator can drive it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def unix_ms(self) -> int:
        """Wall-clock time in Unix milliseconds."""
        ...


class SystemClock:
    """The host's real-time clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def unix_ms(self) -> int:
        return time.time_ns() // 1_000_000
