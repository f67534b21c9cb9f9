"""Which device the bus asks next, and when. Pure: the caller passes the time in; no I/O, no clock.

Every device has exactly one due time. The bus owner takes the device that is due first (ties go to the one
that has waited longest, so devices rotate), does one exchange with it, and gives it back with its next due
time. A device that has to retry is given back as due *now*, which puts it behind every device that became
due while it was being asked: a silent or garbling device holds the bus for at most one request timeout
before the others get their turn.

First due times are spread with a small random phase offset from the seeded ``rng``, so that sensors with
the same interval do not all fall due together after every start (Home Assistant's update coordinator does
the same).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["PHASE_OFFSET_MS_MAX", "PollScheduler", "next_cycle_due_s"]

# The phase offset is at most this, and at most one poll interval.
PHASE_OFFSET_MS_MAX = 1000


@dataclass(order=True, slots=True)
class _Entry:
    due_s: float
    order: int
    index: int = field(compare=False)


class PollScheduler:
    """A due-time queue of device indexes; see the module docstring."""

    def __init__(self, poll_intervals_ms: Sequence[int], *, now_s: float, rng: random.Random) -> None:
        assert poll_intervals_ms, "a bus has at least one device"
        self._order = 0
        self._heap: list[_Entry] = []
        self._out: set[int] = set()
        for index, interval_ms in enumerate(poll_intervals_ms):
            assert interval_ms > 0
            offset_ms = rng.uniform(0, min(interval_ms, PHASE_OFFSET_MS_MAX))
            self._push(index, now_s + offset_ms / 1000)

    def __len__(self) -> int:
        return len(self._heap)

    def peek(self) -> tuple[int, float]:
        """The device due first and its due time, without taking it."""
        entry = self._heap[0]
        return entry.index, entry.due_s

    def take(self) -> tuple[int, float]:
        """Take the device due first; it must be given back with ``give_back`` before it is due again."""
        entry = heapq.heappop(self._heap)
        self._out.add(entry.index)
        return entry.index, entry.due_s

    def give_back(self, index: int, due_s: float) -> None:
        assert index in self._out, f"device {index} was not taken"
        self._out.remove(index)
        self._push(index, due_s)

    def _push(self, index: int, due_s: float) -> None:
        self._order += 1
        heapq.heappush(self._heap, _Entry(due_s, self._order, index))


def next_cycle_due_s(cycle_due_s: float, interval_s: float, now_s: float) -> float:
    """The next cycle keeps the device's phase; a device that fell behind skips the cycles it missed
    instead of being asked several times in a row to catch up."""
    due_s = cycle_due_s + interval_s
    if due_s < now_s:
        missed = int((now_s - due_s) // interval_s) + 1
        due_s += missed * interval_s
        # Never later than one interval from now; floating-point rounding could otherwise overshoot.
        due_s = min(due_s, now_s + interval_s)
    return due_s
