"""Arithmetic on a stream's committed seqs: the contiguous prefix 1..`prefix` plus ranges above it.

The cloud keeps, per (gateway, outbox), `committed_through_seq` (the prefix) and a few committed
ranges above it (`StreamState.committed_ranges`): ascending, disjoint, none touching another or
the prefix (a range that comes to touch the prefix merges into it). "Committed" means handled:
stored, a duplicate, quarantined or recorded as a gap. These functions are pure, so the rules
that `cloud.ingest.commit` applies inside its transaction can be tested on their own.
"""

from __future__ import annotations

from cloud.store import SeqRanges

__all__ = ["add_committed", "committed_below", "is_committed", "uncommitted"]


def is_committed(seq: int, prefix: int, ranges: SeqRanges) -> bool:
    """Whether `seq` is in the prefix or in one of the ranges."""
    return seq <= prefix or any(first <= seq <= last for first, last in ranges)


def committed_below(seq: int, prefix: int, ranges: SeqRanges) -> int:
    """The highest committed seq below `seq` (0 when none is)."""
    below = min(prefix, seq - 1)
    for first, last in ranges:
        if first < seq:
            below = max(below, min(last, seq - 1))
    return max(below, 0)


def uncommitted(low: int, high: int, prefix: int, ranges: SeqRanges) -> list[tuple[int, int]]:
    """The seqs in low..high (inclusive) that are not committed, as ascending inclusive ranges."""
    holes = []
    cursor = max(low, prefix + 1)
    for first, last in ranges:
        if cursor > high:
            break
        if last < cursor:
            continue
        if first > cursor:
            holes.append((cursor, min(first - 1, high)))
        cursor = max(cursor, last + 1)
    if cursor <= high:
        holes.append((cursor, high))
    return holes


def add_committed(prefix: int, ranges: SeqRanges, first: int, last: int) -> tuple[int, SeqRanges]:
    """The prefix and ranges once first..last is committed too, normalised (merged, prefix absorbed)."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted([*ranges, (first, last)]):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    above = []
    for low, high in merged:
        if low <= prefix + 1:
            prefix = max(prefix, high)
        else:
            above.append((low, high))
    return prefix, tuple(above)
