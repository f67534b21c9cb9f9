"""Exception KPIs for a time window: how many were raised and resolved, how fast, how often they recur.

- raised: exceptions raised in [since, until); by_rule counts them per rule.
- resolved: exceptions resolved in [since, until) (by hand, by acknowledging a cleared one, or
  by clearing an acknowledged one).
- open: exceptions raised before `until` and not resolved before it.
- resolution_time_s_*: resolved_at - raised_at of the exceptions resolved in the window, in
  seconds: mean, and the 50th and 90th percentiles by nearest rank (the smallest value with at
  least p % of the values at or below it); None when none was resolved.
- recurrence_rate: of the exceptions raised in the window, the share whose rule x subject had
  already had an exception raised earlier in the window (which was resolved before, since one
  is open per key at a time); None when none was raised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloud.store.sql import Sql

__all__ = ["ExceptionStats", "exception_stats", "nearest_rank"]

MICROS_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class ExceptionStats:
    raised: int
    resolved: int
    open: int
    resolution_time_s_mean: float | None
    resolution_time_s_p50: float | None
    resolution_time_s_p90: float | None
    recurrence_rate: float | None
    by_rule: Mapping[str, int]


def nearest_rank(sorted_values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank percentile of ascending values; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def exception_stats(sql: Sql, since_us: int, until_us: int) -> ExceptionStats:
    """The KPIs of the window [since_us, until_us)."""
    raised_rows = await sql.fetch_all(
        "SELECT rule, subject, raised_at_us, exception_id FROM exceptions "
        "WHERE raised_at_us >= ? AND raised_at_us < ? ORDER BY raised_at_us, exception_id",
        (since_us, until_us),
    )
    resolved_rows = await sql.fetch_all(
        "SELECT raised_at_us, resolved_at_us FROM exceptions WHERE resolved_at_us >= ? AND resolved_at_us < ?",
        (since_us, until_us),
    )
    open_row = await sql.fetch_one(
        "SELECT COUNT(*) FROM exceptions WHERE raised_at_us < ? AND (resolved_at_us IS NULL OR resolved_at_us >= ?)",
        (until_us, until_us),
    )
    by_rule: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    recurring = 0
    for rule, subject, _, _ in raised_rows:
        by_rule[rule] = by_rule.get(rule, 0) + 1
        if (rule, subject) in seen:
            recurring += 1
        seen.add((rule, subject))
    durations = sorted((int(resolved) - int(raised)) / MICROS_PER_SECOND for raised, resolved in resolved_rows)
    raised = len(raised_rows)
    return ExceptionStats(
        raised=raised,
        resolved=len(durations),
        open=int(open_row[0]) if open_row is not None else 0,
        resolution_time_s_mean=sum(durations) / len(durations) if durations else None,
        resolution_time_s_p50=nearest_rank(durations, 50),
        resolution_time_s_p90=nearest_rank(durations, 90),
        recurrence_rate=recurring / raised if raised else None,
        by_rule=dict(sorted(by_rule.items())),
    )
