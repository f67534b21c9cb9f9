"""Which outbox rows the uplink sends next: the backlog in seq order, and fresh events from the tail.

With a cloud that does not accept ranges (`Welcome.accepts_ranges` false) there is one lane: rows in
seq order from where the cloud said to resume, as before.

With one that does, a second lane keeps fresh events moving while a backlog drains:
- The backlog lane reads rows in seq order from its cursor, up to the next range already sent or
  committed above it; when nothing is left below that range it jumps past it.
- The live lane sends the newest events. When the tail is more than `backlog_threshold` seqs ahead
  of everything sent, and fewer than `ranges_max` ranges are open, it opens a new range at the newest
  `batch_max` events; otherwise it extends its range with whatever arrived since. At the bound it
  opens no new range: it extends the top one, or, with none above the backlog cursor, stays quiet,
  and sending is in seq order only until acks merge ranges into the cloud's prefix.
- The lanes take turns, one batch each, within the uplink's one window of unacked batches; a live
  batch never overlaps rows the backlog lane will read (they lie below the ranges).
Every batch says `follows_seq` (its lane's cursor): the seqs between it and the batch's first seq
are gone at the edge (shed sensor samples), so the cloud records them as a gap. When the backlog
lane jumps a range, its next batch still follows its last row, so a hole right below the range is
declared gone too; the range itself is committed by then (sent earlier on the same stream).

`ranges` is the edge's view of ranges sent or committed above the cloud's prefix; it is pruned as
acks move the prefix, so it holds at least as many ranges as the cloud does.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.outbox import Outbox

__all__ = ["LIVE_BACKLOG_BATCHES", "Lanes", "PlannedBatch", "contiguous_prefix", "within_bytes"]

# The live lane opens a range once the tail is more than this many batches ahead of what was sent.
LIVE_BACKLOG_BATCHES = 2

Rows = list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    rows: Rows  # (seq, serialized Event), seq-contiguous
    follows_seq: int | None  # None: to a cloud that does not accept ranges
    live: bool


class Lanes:
    """The send cursors of one session; `next_batch` picks the rows, `acked` prunes settled ranges."""

    def __init__(
        self,
        resume_after_seq: int,
        committed_ranges: list[tuple[int, int]],
        *,
        ranges_max: int,
        batch_max: int,
        bytes_max: int,
    ) -> None:
        self.backlog_seq = resume_after_seq  # backlog cursor: every seq up to it is sent, committed or gone
        self._backlog_follows = resume_after_seq  # the backlog lane's last row (or the resume point)
        self.ranges: list[tuple[int, int]] = sorted(committed_ranges)
        self._ranges_max = ranges_max  # 0: the cloud does not accept ranges
        self._batch_max = batch_max
        self._bytes_max = bytes_max
        self.backlog_threshold = LIVE_BACKLOG_BATCHES * batch_max
        self._live_turn = True

    async def next_batch(self, outbox: Outbox) -> PlannedBatch | None:
        """The next batch to send (its rows are then counted as sent), or None when nothing is due."""
        if self._ranges_max and self._live_turn:
            planned = await self._live(outbox)
            if planned is not None:
                self._live_turn = False
                return planned
        planned = await self._backlog(outbox)
        if planned is not None:
            self._live_turn = True
            return planned
        return await self._live(outbox) if self._ranges_max else None

    def acked(self, prefix: int) -> None:
        """The cloud's prefix reached `prefix`: ranges at or below it are merged there."""
        self.ranges = [pair for pair in self.ranges if pair[1] > prefix]

    async def _backlog(self, outbox: Outbox) -> PlannedBatch | None:
        while True:
            upper = next((pair for pair in self.ranges if pair[0] > self.backlog_seq), None)
            rows = await outbox.read_after(self.backlog_seq, self._batch_max, None if upper is None else upper[0])
            if rows:
                rows = within_bytes(contiguous_prefix(rows), self._bytes_max)
                follows = self._backlog_follows
                self.backlog_seq = self._backlog_follows = rows[-1][0]
                return PlannedBatch(rows, follows if self._ranges_max else None, live=False)
            if upper is None:
                return None
            self.backlog_seq = upper[1]  # nothing left below the range: its seqs are sent or committed

    async def _live(self, outbox: Outbox) -> PlannedBatch | None:
        above = [pair for pair in self.ranges if pair[0] > self.backlog_seq]
        tail = above[-1][1] if above else self.backlog_seq
        if outbox.newest_seq - tail > self.backlog_threshold and len(self.ranges) < self._ranges_max:
            start = outbox.newest_seq - self._batch_max  # a new range: the newest events first
        elif above:
            start = tail
        else:
            return None
        rows = await outbox.read_after(start, self._batch_max)
        if not rows:
            return None
        rows = within_bytes(contiguous_prefix(rows), self._bytes_max)
        self._add_range(start + 1, rows[-1][0])
        return PlannedBatch(rows, start, live=True)

    def _add_range(self, first: int, last: int) -> None:
        merged: list[tuple[int, int]] = []
        for low, high in sorted([*self.ranges, (first, last)]):
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self.ranges = merged


def contiguous_prefix(rows: Rows) -> Rows:
    """Rows up to the first seq gap: a batch is seq-contiguous; a gap (shed sensor samples) ends it, and
    the next batch, starting past it, tells the cloud those seqs are gone."""
    for index in range(1, len(rows)):
        if rows[index][0] != rows[index - 1][0] + 1:
            return rows[:index]
    return rows


def within_bytes(rows: Rows, bytes_max: int) -> Rows:
    """The longest prefix of rows whose payloads fit in `bytes_max`; at least one row, whatever its size."""
    total = 0
    for index, (_seq, payload) in enumerate(rows):
        total += len(payload) + 8  # tag and length prefix of each embedded event
        if total > bytes_max and index > 0:
            return rows[:index]
    return rows
