"""The agent's clock, passed to everything that reads time so tests and the simulator can drive it.

Fault-injection knob (tests only): the environment variable `TALLYPORT_CLOCK_OFFSET_S` (seconds, may be
negative or fractional, at most `CLOCK_OFFSET_S_MAX` either way) shifts every `SystemClock` of the process
by that much, read once when the clock is made (the agent makes its clock once, at start). It stands in for
a gateway whose real-time clock is off, which a test cannot arrange for one process otherwise (libfaketime
would need a system package). A shifted clock logs a warning saying so, once per process.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from edge.errors import ConfigError

log = logging.getLogger(__name__)

CLOCK_OFFSET_ENV = "TALLYPORT_CLOCK_OFFSET_S"
CLOCK_OFFSET_S_MAX = 7 * 24 * 3600
_offset_warned = False


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def unix_ms(self) -> int:
        """Wall-clock time in Unix milliseconds."""
        ...


def clock_offset_s_from_environment(environ: Mapping[str, str] | None = None) -> float:
    """The fault-injection clock offset in seconds (0 when unset); ConfigError naming the variable if bad."""
    text = (os.environ if environ is None else environ).get(CLOCK_OFFSET_ENV, "").strip()
    if not text:
        return 0.0
    try:
        offset_s = float(text)
    except ValueError:
        offset_s = math.nan
    if not math.isfinite(offset_s) or abs(offset_s) > CLOCK_OFFSET_S_MAX:
        raise ConfigError(
            f"environment variable {CLOCK_OFFSET_ENV}: expected seconds between -{CLOCK_OFFSET_S_MAX} and "
            f"{CLOCK_OFFSET_S_MAX} (e.g. 3600 or -3600), got {text!r}"
        )
    return offset_s


class SystemClock:
    """The host's real-time clock, shifted by `offset_s` (by default: the fault-injection knob, normally 0)."""

    def __init__(self, offset_s: float | None = None) -> None:
        global _offset_warned
        self.offset_s = clock_offset_s_from_environment() if offset_s is None else offset_s
        self._offset = timedelta(seconds=self.offset_s)
        self._offset_ns = round(self.offset_s * 1e9)
        if self.offset_s and not _offset_warned:
            _offset_warned = True
            log.warning("clock shifted for fault injection", extra={"offset_s": self.offset_s})

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def unix_ms(self) -> int:
        return (time.time_ns() + self._offset_ns) // 1_000_000
