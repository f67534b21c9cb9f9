"""The KPIs central operations look at: record accuracy, freshness, exception handling, data quality.

All over a window [since, until) (GetKpis default: the last 24 h).

Inventory record accuracy (IRA), from the cycle-count drifts counted in the window:
    IRA = accurate counts / counts            (a count is accurate when within its ABC tolerance;
                                               positive and negative variances are never netted)
    dollar accuracy = 1 − Σ |variance × unit cost| / Σ system quantity × unit cost   (floored at 0;
                                               undefined when the system value is 0)
grouped overall, by location and by ABC class ("" = GTIN not in the SKU master). Snapshot drifts
give the same figures per source system (agreement of ERP/WMS with the event-derived on-hand).

Freshness per gateway: age = now − last contact (newest over its outboxes); fresh when age <=
`freshness_sla_s`.

Exceptions: `cloud.exceptions.kpis.exception_stats` (raised, resolved, open, resolution time mean /
p50 / p90, recurrence rate) over the window.

Data quality per feed (a feed is a gateway), DAMA dimensions, each a share from 0 to 1:
    completeness = 1 − lost seqs / expected seqs     expected = Σ committed_through_seq over the
                                                     gateway's outboxes (seqs start at 1), lost =
                                                     Σ sizes of its recorded gaps (all time)
    timeliness   = on-time events / events           events with event_time in the window; on time
                                                     when received_at − event_time <= timeliness_sla_s
    consistency  = 1 − (rejects + duplicates) / (stored + rejects + duplicates)   (all time)
    validity     = stored / (stored + rejects)       (all time: what passed the contract checks)
    score        = Σ weight × dimension / Σ weight, over the dimensions that are defined
                   weights: completeness 0.35, timeliness 0.25, consistency 0.20, validity 0.20
A dimension with nothing to measure (no seqs, no events in the window) is undefined (None) and
leaves the score; a feed with no defined dimension has no score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cloud.exceptions.kpis import ExceptionStats, exception_stats
from cloud.store import GatewayRecord, Store
from cloud.store.sql import Sql
from cloud.timestamps import MICROS_PER_SECOND

__all__ = [
    "DATA_QUALITY_WEIGHTS",
    "AccuracyGroup",
    "ComparedRow",
    "FeedQuality",
    "GatewayFreshness",
    "Kpis",
    "accuracy_groups",
    "collect_kpis",
    "feed_quality",
    "freshness",
    "lost_seqs",
]

DATA_QUALITY_WEIGHTS: Mapping[str, float] = {
    "completeness": 0.35,
    "timeliness": 0.25,
    "consistency": 0.20,
    "validity": 0.20,
}
assert abs(sum(DATA_QUALITY_WEIGHTS.values()) - 1.0) < 1e-12


@dataclass(frozen=True, slots=True)
class AccuracyGroup:
    """Record and dollar accuracy of a group of compared rows (a location, a class, a source, all)."""

    key: str
    counts: int
    accurate: int
    system_value: float
    gross_variance_value: float

    @property
    def record_accuracy(self) -> float | None:
        """Accurate / counts; None when nothing was counted."""
        return self.accurate / self.counts if self.counts else None

    @property
    def dollar_accuracy(self) -> float | None:
        """1 − gross variance value / system value, floored at 0; None when the system value is 0."""
        if self.system_value <= 0:
            return None
        return max(0.0, 1.0 - self.gross_variance_value / self.system_value)


@dataclass(frozen=True, slots=True)
class GatewayFreshness:
    """How long ago a gateway was last heard from, against the freshness SLA."""

    gateway_id: str
    last_contact_us: int
    age_s: float
    sla_s: float
    fresh: bool


@dataclass(frozen=True, slots=True)
class FeedQuality:
    """The data-quality dimensions of one feed (gateway) and their weighted score."""

    gateway_id: str
    expected_seqs: int
    lost_seqs: int
    events_in_window: int
    on_time_events: int
    lag_s_mean: float | None
    events_stored: int
    duplicates: int
    rejects: int
    completeness: float | None
    timeliness: float | None
    consistency: float | None
    validity: float | None
    score: float | None


@dataclass(frozen=True, slots=True)
class Kpis:
    """Every KPI group over one window."""

    since_us: int
    until_us: int
    overall: AccuracyGroup
    by_location: tuple[AccuracyGroup, ...]
    by_abc_class: tuple[AccuracyGroup, ...]
    by_snapshot_source: tuple[AccuracyGroup, ...]
    freshness: tuple[GatewayFreshness, ...]
    exceptions: ExceptionStats
    data_quality: tuple[FeedQuality, ...]


@dataclass(frozen=True, slots=True)
class ComparedRow:
    """What accuracy needs of one stored drift."""

    source: str
    biz_location: str
    abc_class: str
    accurate: bool
    system_value: float
    gross_variance_value: float  # |variance × unit cost|


def accuracy_groups(rows: Iterable[ComparedRow], group: Callable[[ComparedRow], str]) -> list[AccuracyGroup]:
    """One AccuracyGroup per distinct `group(row)`, by key."""
    totals: dict[str, tuple[int, int, float, float]] = {}
    for row in rows:
        counts, accurate, system_value, variance_value = totals.get(group(row), (0, 0, 0.0, 0.0))
        totals[group(row)] = (
            counts + 1,
            accurate + int(row.accurate),
            system_value + row.system_value,
            variance_value + row.gross_variance_value,
        )
    return [AccuracyGroup(key, *total) for key, total in sorted(totals.items())]


def overall(rows: Sequence[ComparedRow]) -> AccuracyGroup:
    """All rows as one group (key "")."""
    groups = accuracy_groups(rows, lambda row: "")
    return groups[0] if groups else AccuracyGroup("", 0, 0, 0.0, 0.0)


def freshness(gateways: Iterable[GatewayRecord], now_us: int, sla_s: float) -> list[GatewayFreshness]:
    """Per gateway (newest contact over its outboxes), by gateway_id."""
    last: dict[str, int] = {}
    for record in gateways:
        state = record.state
        last[state.gateway_id] = max(last.get(state.gateway_id, state.last_contact_us), state.last_contact_us)
    result = []
    for gateway_id, contact_us in sorted(last.items()):
        age_s = max(0, now_us - contact_us) / MICROS_PER_SECOND
        result.append(GatewayFreshness(gateway_id, contact_us, age_s, sla_s, age_s <= sla_s))
    return result


@dataclass(frozen=True, slots=True)
class EventTiming:
    """Events of one gateway with event_time in the window: how many, how many on time, the summed lag."""

    events: int
    on_time: int
    lag_us_total: float


def feed_quality(
    gateways: Iterable[GatewayRecord],
    timing: Mapping[str, EventTiming],
    lost_by_gateway: Mapping[str, int] | None = None,
) -> list[FeedQuality]:
    """The data-quality dimensions and score per gateway (see the module docstring), by gateway_id.

    `lost_by_gateway`: per gateway, the seqs of all its recorded gaps (`lost_seqs`); without it, those of the
    gaps `gateways` carry, which `Store.list_gateways` caps at the newest per stream."""
    totals: dict[str, list[int]] = {}  # expected, lost, stored, duplicates, rejects
    for record in gateways:
        state = record.state
        total = totals.setdefault(state.gateway_id, [0, 0, 0, 0, 0])
        total[0] += state.committed_through_seq
        if lost_by_gateway is None:
            total[1] += sum(gap.last_seq - gap.first_seq + 1 for gap in record.gaps)
        else:
            total[1] = lost_by_gateway.get(state.gateway_id, 0)
        total[2] += state.events_stored
        total[3] += state.duplicates
        total[4] += state.rejects
    for gateway_id in timing:
        totals.setdefault(gateway_id, [0, 0, 0, 0, 0])
    feeds = []
    for gateway_id, (expected, lost, stored, duplicates, rejects) in sorted(totals.items()):
        seen = timing.get(gateway_id, EventTiming(0, 0, 0.0))
        dimensions = {
            "completeness": 1.0 - lost / expected if expected else None,
            "timeliness": seen.on_time / seen.events if seen.events else None,
            "consistency": 1.0 - (rejects + duplicates) / (stored + rejects + duplicates)
            if stored + rejects + duplicates
            else None,
            "validity": stored / (stored + rejects) if stored + rejects else None,
        }
        feeds.append(
            FeedQuality(
                gateway_id=gateway_id,
                expected_seqs=expected,
                lost_seqs=lost,
                events_in_window=seen.events,
                on_time_events=seen.on_time,
                lag_s_mean=seen.lag_us_total / seen.events / MICROS_PER_SECOND if seen.events else None,
                events_stored=stored,
                duplicates=duplicates,
                rejects=rejects,
                completeness=dimensions["completeness"],
                timeliness=dimensions["timeliness"],
                consistency=dimensions["consistency"],
                validity=dimensions["validity"],
                score=_score(dimensions),
            )
        )
    return feeds


def _score(dimensions: Mapping[str, float | None]) -> float | None:
    defined = {name: value for name, value in dimensions.items() if value is not None}
    if not defined:
        return None
    weight = sum(DATA_QUALITY_WEIGHTS[name] for name in defined)
    return sum(DATA_QUALITY_WEIGHTS[name] * value for name, value in defined.items()) / weight


async def accuracy_rows(sql: Sql, source_kind: str, since_us: int, until_us: int) -> list[ComparedRow]:
    """Every drift of `source_kind` whose count (or snapshot) time is in the window."""
    rows = await sql.fetch_all(
        "SELECT source, biz_location, abc_class, within_tolerance, system_quantity * unit_cost, "
        "ABS(variance_value) FROM reconciliation_drifts "
        "WHERE source_kind = ? AND counted_at_us >= ? AND counted_at_us < ?",
        (source_kind, since_us, until_us),
    )
    return [
        ComparedRow(str(row[0]), str(row[1]), str(row[2]), bool(row[3]), float(row[4]), float(row[5])) for row in rows
    ]


async def event_timing(sql: Sql, since_us: int, until_us: int, sla_s: float) -> dict[str, EventTiming]:
    """Per gateway: events with event_time in the window, those received within the SLA, the summed lag."""
    rows = await sql.fetch_all(
        "SELECT gateway_id, COUNT(*), SUM(CASE WHEN received_at_us - event_time_us <= ? THEN 1 ELSE 0 END), "
        "SUM(received_at_us - event_time_us) FROM events WHERE event_time_us >= ? AND event_time_us < ? "
        "GROUP BY gateway_id",
        (round(sla_s * MICROS_PER_SECOND), since_us, until_us),
    )
    # PostgreSQL sums bigints as numeric (a Decimal here): int()/float() read both stores alike.
    return {str(row[0]): EventTiming(int(row[1]), int(row[2] or 0), float(row[3] or 0)) for row in rows}


async def lost_seqs(sql: Sql) -> dict[str, int]:
    """Per gateway: the seqs of every gap it ever had recorded (all time, every outbox)."""
    rows = await sql.fetch_all("SELECT gateway_id, SUM(last_seq - first_seq + 1) FROM gaps GROUP BY gateway_id")
    # PostgreSQL sums bigints as numeric (a Decimal here): int() reads both stores alike.
    return {str(row[0]): int(row[1]) for row in rows}


async def collect_kpis(
    store: Store,
    since_us: int,
    until_us: int,
    now_us: int,
    freshness_sla_s: float,
    timeliness_sla_s: float,
) -> Kpis:
    """Every KPI group over [since, until), read from committed state."""
    gateways = await store.list_gateways()
    async with store.read() as sql:
        counted = await accuracy_rows(sql, "cycle_count", since_us, until_us)
        snapshot = await accuracy_rows(sql, "snapshot", since_us, until_us)
        timing = await event_timing(sql, since_us, until_us, timeliness_sla_s)
        lost = await lost_seqs(sql)
        exceptions = await exception_stats(sql, since_us, until_us)
    return Kpis(
        since_us=since_us,
        until_us=until_us,
        overall=overall(counted),
        by_location=tuple(accuracy_groups(counted, lambda row: row.biz_location)),
        by_abc_class=tuple(accuracy_groups(counted, lambda row: row.abc_class)),
        by_snapshot_source=tuple(accuracy_groups(snapshot, lambda row: row.source)),
        freshness=tuple(freshness(gateways, now_us, freshness_sla_s)),
        exceptions=exceptions,
        data_quality=tuple(feed_quality(gateways, timing, lost)),
    )
