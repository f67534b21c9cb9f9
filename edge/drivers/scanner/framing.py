"""Reassemble a serial scanner's byte stream into frames, one frame per scanned barcode.

Pure: no I/O and no clock. The caller passes the time in, so tests and the simulated site drive it
deterministically. Two modes:

* ``terminator``: a frame ends at any configured terminator, longest match first (``\\r\\n`` is one
  terminator, not ``\\r`` then an empty ``\\n`` frame), or after ``idle_gap_ms`` of silence as a fallback,
  so a scanner that forgot its suffix never leaves a scan stuck in the buffer;
* ``idle_gap``: a frame ends only after ``idle_gap_ms`` of silence. This is for scanners that send
  "data as is" with no suffix (the Zebra RS-232 default); terminator bytes are data here, because a 2D code
  may itself contain CR or LF.

A message longer than ``frame_bytes_max`` is cut: its first ``frame_bytes_max`` bytes are emitted once, with
``overflow=True``, when the message ends (terminator or idle gap), and the bytes beyond the cap are dropped
and counted in ``Frame.discarded_bytes``. Memory stays bounded by ``frame_bytes_max`` plus the longest
terminator. Frames of zero bytes (a lone CRLF) are dropped.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Frame", "FramingMode", "ScanFramer"]

FramingMode = Literal["terminator", "idle_gap"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One message from the scanner, without its terminator."""

    data: bytes
    overflow: bool = False
    """True when the message was longer than ``frame_bytes_max`` and ``data`` is its truncated head."""
    discarded_bytes: int = 0
    """How many bytes of this message were dropped beyond ``frame_bytes_max``."""


class ScanFramer:
    """Split a byte stream into frames on terminators and idle gaps; see the module docstring."""

    def __init__(
        self,
        terminators: Sequence[bytes],
        frame_bytes_max: int,
        idle_gap_ms: int,
        mode: FramingMode = "terminator",
    ) -> None:
        if frame_bytes_max < 1:
            raise ValueError(f"frame_bytes_max must be >= 1, got {frame_bytes_max}")
        if idle_gap_ms < 1:
            raise ValueError(f"idle_gap_ms must be >= 1, got {idle_gap_ms}")
        if mode == "terminator" and (not terminators or not all(terminators)):
            raise ValueError(f"terminator framing needs non-empty terminators, got {list(terminators)!r}")
        self._frame_bytes_max = frame_bytes_max
        self._idle_gap_ms = idle_gap_ms
        # Longest first: at one position the regex alternation takes the first alternative that matches.
        ordered = sorted(set(terminators), key=len, reverse=True) if mode == "terminator" else []
        self._terminators = tuple(ordered)
        self._pattern = re.compile(b"|".join(re.escape(t) for t in ordered)) if ordered else None
        self._body = bytearray()
        self._discarded = 0
        # Trailing bytes that may be the start of a terminator: decided by the next byte or the idle gap.
        self._held = b""
        self._last_data_ms = 0
        self.discarded_bytes_total = 0
        """Bytes dropped from overflowing messages since this framer was made."""

    def feed(self, data: bytes, now_ms: int) -> list[Frame]:
        """Add bytes received at ``now_ms``; return the frames they complete, oldest first."""
        if not data:
            return []
        # A partial message that went quiet for the idle gap ended before these bytes arrived,
        # even if the caller did not call flush_idle() in time.
        frames = self.flush_idle(now_ms)
        self._last_data_ms = now_ms
        frames += self._scan(self._held + data, final=False)
        return frames

    def flush_idle(self, now_ms: int) -> list[Frame]:
        """Return the pending partial frame if the line has been idle for ``idle_gap_ms``."""
        deadline = self.deadline_ms()
        if deadline is None or now_ms < deadline:
            return []
        return self.flush()

    def flush(self) -> list[Frame]:
        """End the pending message now, whatever the time (the port closed)."""
        frames = self._scan(self._held, final=True)
        return frames + self._end_message()

    def deadline_ms(self) -> int | None:
        """When the pending partial frame is due to be flushed, or None when nothing is pending."""
        if not (self._body or self._held or self._discarded):
            return None
        return self._last_data_ms + self._idle_gap_ms

    def _scan(self, work: bytes, *, final: bool) -> list[Frame]:
        """Split ``work`` on terminators; keep an undecided tail unless this is the end of the message."""
        self._held = b""
        frames: list[Frame] = []
        undecided = [len(work)] if final else self._undecided_starts(work)
        pos = 0
        while self._pattern is not None:
            match = self._pattern.search(work, pos)
            hold_from = undecided[bisect.bisect_left(undecided, pos)]
            # A match at or after the first undecided position could still turn into a longer
            # terminator (or an earlier one) once more bytes arrive: wait for them.
            if match is None or match.start() >= hold_from:
                break
            self._take(work[pos : match.start()])
            frames += self._end_message()
            pos = match.end()
        hold_from = undecided[bisect.bisect_left(undecided, pos)]
        self._take(work[pos:hold_from])
        self._held = work[hold_from:]
        return frames

    def _undecided_starts(self, work: bytes) -> list[int]:
        """Ascending positions where the rest of ``work`` is a proper prefix of a terminator; then len."""
        longest = len(self._terminators[0]) if self._terminators else 1
        starts = [
            start
            for start in range(max(0, len(work) - longest + 1), len(work))
            if any(len(t) > len(work) - start and t.startswith(work[start:]) for t in self._terminators)
        ]
        return [*starts, len(work)]

    def _take(self, segment: bytes) -> None:
        room = self._frame_bytes_max - len(self._body)
        self._body += segment[:room]
        excess = len(segment) - max(room, 0)
        if excess > 0:
            self._discarded += excess
            self.discarded_bytes_total += excess

    def _end_message(self) -> list[Frame]:
        if not self._body and not self._discarded:
            return []
        frame = Frame(bytes(self._body), overflow=self._discarded > 0, discarded_bytes=self._discarded)
        self._body = bytearray()
        self._discarded = 0
        return [frame]
