"""Time as the store keeps it: integer microseconds since the Unix epoch, UTC.

Integers sort and compare exactly in SQL; protobuf `Timestamp`s are converted at the edges
of the store, never stored as text.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["Clock", "from_micros", "system_clock_us", "to_micros"]

MICROS_PER_SECOND = 1_000_000

# A clock returns "now" in microseconds since the epoch; tests pass their own.
Clock = Callable[[], int]


def system_clock_us() -> int:
    """Wall-clock now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_micros(timestamp: Timestamp) -> int:
    """A protobuf Timestamp as microseconds since the epoch (sub-microsecond part dropped)."""
    return timestamp.seconds * MICROS_PER_SECOND + timestamp.nanos // 1000


def from_micros(micros: int) -> Timestamp:
    """Microseconds since the epoch as a protobuf Timestamp."""
    seconds, remainder = divmod(micros, MICROS_PER_SECOND)
    return Timestamp(seconds=seconds, nanos=remainder * 1000)
