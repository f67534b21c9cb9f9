"""The pure parts of reconciliation: ABC tolerances, drifts, snapshot scope, EPC comparison, KPI formulas."""

from __future__ import annotations

import pytest

from cloud.masterdata.models import MasterData, Sku
from cloud.reconciliation.compare import (
    SystemTag,
    compare_counts,
    compare_epcs,
    compare_snapshot,
    is_within_tolerance,
    summarize,
)
from cloud.reconciliation.config import ReconciliationSection
from cloud.reconciliation.kpis import EventTiming, feed_quality, freshness
from cloud.reconciliation.models import CycleCount, Drift, EpcDrift, OnHandSnapshot, SnapshotRow
from cloud.store import GapRecord, GatewayRecord, StreamState

DOCK = "urn:tallyport:loc:dc1:dock-4"
AISLE = "urn:tallyport:loc:dc1:aisle-7"
GTIN_A = "09501101530003"
GTIN_B = "05901234123457"
GTIN_C = "10614141073464"
GTIN_UNKNOWN = "00614141000012"
MASTER = MasterData.of(
    [
        Sku(GTIN_A, "A item", 10.0, abc_class="A"),
        Sku(GTIN_B, "B item", 2.5, abc_class="B"),
        Sku(GTIN_C, "C item", 4.0, abc_class="C"),
    ]
)
TOLERANCES = ReconciliationSection()


@pytest.mark.parametrize(
    ("system", "counted", "tolerance", "within"),
    [
        (100, 101, 1.0, True),  # exactly 1 % of 100: within, no float rounding
        (100, 99, 1.0, True),
        (100, 102, 1.0, False),
        (100, 97, 3.0, True),
        (100, 96.9, 3.0, False),
        (20, 21, 5.0, True),
        (0, 0, 5.0, True),
        (0, 1, 50.0, False),  # nothing on record only matches nothing counted
        (10, 0, 0.0, False),
        (0.3, 0.1 + 0.2, 0.0, True),  # float noise is not a variance
    ],
)
def test_tolerance_is_a_share_of_the_system_quantity(
    system: float, counted: float, tolerance: float, within: bool
) -> None:
    assert is_within_tolerance(system, counted, tolerance) is within


def test_counts_become_drifts_with_abc_tolerance_and_value() -> None:
    counts = [
        CycleCount(DOCK, GTIN_A, 101, 5, "alice"),
        CycleCount(DOCK, GTIN_B, 47, 6, "bob"),
        CycleCount(AISLE, GTIN_UNKNOWN, 2, 7, "bob"),
    ]
    on_hand = {(DOCK, GTIN_A): 100.0, (DOCK, GTIN_B): 50.0}
    drifts = compare_counts(counts, on_hand, MASTER, TOLERANCES.tolerance_pct)
    assert drifts == [
        Drift("cycle_count", "alice", DOCK, GTIN_A, "A", 100.0, 101, 1.0, 10.0, 10.0, 1.0, True, 5),
        Drift("cycle_count", "bob", DOCK, GTIN_B, "B", 50.0, 47, -3.0, 2.5, -7.5, 3.0, False, 6),
        Drift("cycle_count", "bob", AISLE, GTIN_UNKNOWN, "", 0.0, 2, 2.0, 0.0, 0.0, 0.0, False, 7),
    ]
    summary = summarize("run-1", "cycle_count", "2 counters", "batch-1", drifts, [], 7, 9)
    assert (summary.rows_compared, summary.accurate) == (3, 1)
    assert summary.gross_variance_value == 17.5  # |+10| + |-7.5| + 0: never netted
    assert summary.net_variance_value == 2.5
    assert summary.system_value == 1125.0
    assert summary.record_accuracy == 1 / 3
    assert summary.dollar_accuracy == 1 - 17.5 / 1125.0


def test_tolerances_are_configurable_per_class() -> None:
    strict = ReconciliationSection(tolerance_pct_a=0.0, tolerance_pct_unclassified=100.0)
    drifts = compare_counts(
        [CycleCount(DOCK, GTIN_A, 101, 0, "a"), CycleCount(DOCK, GTIN_UNKNOWN, 15, 0, "a")],
        {(DOCK, GTIN_A): 100.0, (DOCK, GTIN_UNKNOWN): 10.0},
        MASTER,
        strict.tolerance_pct,
    )
    assert [(drift.tolerance_pct, drift.within_tolerance) for drift in drifts] == [(0.0, False), (100.0, True)]


def test_a_snapshot_covers_every_system_row_at_the_locations_it_lists_and_only_those() -> None:
    snapshot = OnHandSnapshot("erp", 42, (SnapshotRow(DOCK, GTIN_A, 100.0), SnapshotRow(DOCK, GTIN_C, 5.0)))
    on_hand = {(DOCK, GTIN_A): 100.0, (DOCK, GTIN_B): 4.0, (AISLE, GTIN_B): 9.0}
    drifts = compare_snapshot(snapshot, on_hand, MASTER, TOLERANCES.tolerance_pct)
    assert [(d.biz_location, d.gtin, d.system_quantity, d.counted_quantity, d.within_tolerance) for d in drifts] == [
        (DOCK, GTIN_B, 4.0, 0.0, False),  # the system has it, the ERP's set-on-hand says none
        (DOCK, GTIN_A, 100.0, 100.0, True),
        (DOCK, GTIN_C, 0.0, 5.0, False),  # the ERP has it, the events never put it there
    ]
    assert {drift.source for drift in drifts} == {"erp"}
    assert {drift.counted_at_us for drift in drifts} == {42}


def tag(serial: str, location: str = DOCK, gtin: str = GTIN_A, present: bool = True, moving: bool = False) -> SystemTag:
    return SystemTag(
        object_id=f"https://id.gs1.org/01/{gtin}/21/{serial}",
        epc_uri=f"urn:epc:id:sgtin:9501101.053000.{serial}",
        epc_hex=f"30{int(serial):022X}",
        gtin=gtin,
        biz_location=location,
        present=present,
        in_transit=moving,
    )


def keyed(*tags: SystemTag) -> dict[str, SystemTag]:
    return {name: item for item in tags for name in item.names()}


def test_epc_counts_report_missing_and_unexpected_tags() -> None:
    here_counted, here_missed = tag("1"), tag("2")
    elsewhere, gone, moving = tag("3", location=AISLE), tag("4", present=False), tag("5", moving=True)
    count = CycleCount(
        DOCK,
        GTIN_A,
        5,
        0,
        "alice",
        (
            here_counted.epc_uri,
            here_counted.epc_hex.lower(),  # the same tag twice, another spelling: one tag
            elsewhere.object_id,
            gone.epc_hex,
            moving.epc_uri,
            "urn:epc:id:sgtin:9501101.053000.999",  # unknown to the system
        ),
    )
    drifts = compare_epcs(
        count, [here_counted, here_missed, gone, moving], keyed(here_counted, elsewhere, gone, moving)
    )
    assert drifts == [
        EpcDrift(DOCK, GTIN_A, here_missed.epc_uri, "missing", DOCK),
        EpcDrift(DOCK, GTIN_A, elsewhere.object_id, "unexpected", AISLE),
        EpcDrift(DOCK, GTIN_A, gone.epc_hex, "unexpected", ""),
        EpcDrift(DOCK, GTIN_A, "urn:epc:id:sgtin:9501101.053000.5", "unexpected", ""),
        EpcDrift(DOCK, GTIN_A, "urn:epc:id:sgtin:9501101.053000.999", "unexpected", ""),
    ]
    assert compare_epcs(CycleCount(DOCK, GTIN_A, 1, 0, "a"), [here_missed], {}) == []  # counted by quantity only


def stream(
    gateway: str, outbox: str, committed: int, stored: int, duplicates: int, rejects: int, last_us: int
) -> StreamState:
    return StreamState(gateway, outbox, committed, "t/1", 0, last_us, stored, duplicates, rejects, 1)


def test_freshness_takes_the_newest_contact_over_a_gateways_outboxes() -> None:
    records = [
        GatewayRecord(stream("gw-1", "old", 5, 5, 0, 0, 1_000_000)),
        GatewayRecord(stream("gw-1", "new", 5, 5, 0, 0, 100_000_000)),
        GatewayRecord(stream("gw-2", "o", 5, 5, 0, 0, 50_000_000)),
    ]
    result = freshness(records, now_us=400_000_000, sla_s=300)
    assert [(item.gateway_id, item.age_s, item.fresh) for item in result] == [
        ("gw-1", 300.0, True),
        ("gw-2", 350.0, False),
    ]


def test_feed_quality_dimensions_and_weighted_score() -> None:
    gap = GapRecord("gw-1", "o", 1, 2, "not in the edge outbox at hello", 0)
    records = [GatewayRecord(stream("gw-1", "o", 10, 6, 1, 2, 0), (gap,))]
    feeds = feed_quality(records, {"gw-1": EventTiming(6, 3, 6 * 30_000_000.0), "gw-9": EventTiming(2, 2, 0.0)})
    first, other = feeds
    assert (first.expected_seqs, first.lost_seqs) == (10, 2)
    assert first.completeness == 0.8
    assert first.timeliness == 0.5
    assert first.consistency == 1 - 3 / 9
    assert first.validity == 6 / 8
    assert first.lag_s_mean == 30.0
    assert first.score == pytest.approx(0.35 * 0.8 + 0.25 * 0.5 + 0.20 * (1 - 3 / 9) + 0.20 * 0.75, abs=1e-15)
    # A feed seen only in the window (no stream counters): only timeliness is defined, and is the score.
    assert (other.gateway_id, other.completeness, other.timeliness, other.score) == ("gw-9", None, 1.0, 1.0)
