"""Reconciliation end to end on a real server, for each store: on-hand built through the real ingest path,
counts and snapshots imported over gRPC, every drift and every KPI asserted to its exact value.

The site is reconciliation_testkit's; the cloud's clock is turned by hand. Every event is received at
12:01:05, so seqs 3 and 4 (event times 12:00:03 and 12:00:04) arrive later than the 60 s SLA.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from cloud_testkit import DOCK, GATEWAY, STORAGE, cloud_config, item
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from reconciliation_testkit import (
    BASE_TIME_US,
    DOOR_A,
    GTIN_A,
    GTIN_B,
    GTIN_C,
    GTIN_UNKNOWN,
    SKUS,
    ManualClock,
    SnapshotHttpServer,
    stream_the_site,
)
from tallyport.v1 import reconciliation_pb2, reconciliation_pb2_grpc

from cloud.exceptions.kpis import exception_stats
from cloud.reconciliation.config import ReconciliationSection
from cloud.server import SERVICE_NAMES, CloudServer

BASE_S = BASE_TIME_US // 1_000_000
RECEIVED_AT_US = BASE_TIME_US + 65_000_000
COUNTED_AT_S = BASE_S + 70
TTL_S = 600
R = reconciliation_pb2


def at(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(RECEIVED_AT_US)


@pytest.fixture
async def erp() -> AsyncIterator[SnapshotHttpServer]:
    server = await SnapshotHttpServer().start()
    yield server
    await server.close()


@pytest.fixture
async def server(
    store_section: dict[str, Any], clock: ManualClock, erp: SnapshotHttpServer
) -> AsyncIterator[CloudServer]:
    settings = {"erp_url": erp.url, "erp_source": "erp", "snapshot_ttl_s": TTL_S, "erp_timeout_ms": 2000}
    reconciliation = ReconciliationSection.model_validate(settings)
    config = cloud_config(store_section).model_copy(update={"reconciliation": reconciliation})
    async with CloudServer(config, clock=clock) as started:
        yield started


@pytest.fixture
async def stub(server: CloudServer) -> AsyncIterator[Any]:
    async with aio.insecure_channel(server.target) as channel:
        await stream_the_site(channel)
        await server.masterdata.upsert_skus(SKUS)
        yield reconciliation_pb2_grpc.ReconciliationServiceStub(channel)


def count_rows() -> list[reconciliation_pb2.CycleCountRow]:
    def row(location: str, gtin_14: str, quantity: float, counter: str, **more: Any) -> R.CycleCountRow:
        return R.CycleCountRow(
            biz_location=location,
            gtin=gtin_14,
            counted_quantity=quantity,
            counted_at=at(COUNTED_AT_S),
            counter_id=counter,
            **more,
        )

    tagged = [item(GTIN_A, "2001").epc_uri, item(GTIN_A, "2002").epc_hex, item(GTIN_A, "2004").id]
    return [
        row(DOCK, GTIN_A, 101, "alice"),  # +1 of 100: exactly the A tolerance
        row(DOCK, GTIN_B, 47, "alice"),  # -3 of 50: 6 %, outside B's 3 %
        row(STORAGE, GTIN_C, 21, "bob"),  # +1 of 20: exactly C's 5 %
        row(STORAGE, GTIN_A, 3, "bob", epcs_counted=True, epcs=tagged),  # 3 of 3, but not the same 3 tags
        row(STORAGE, GTIN_UNKNOWN, 2, "bob"),  # nothing on record, not in the master: tolerance 0
        row(DOCK, "123", 1, "bob"),  # rejected
    ]


def drift_fields(drift: reconciliation_pb2.Drift) -> tuple[Any, ...]:
    return (
        drift.row,
        drift.source,
        drift.biz_location,
        drift.gtin,
        drift.abc_class,
        drift.system_quantity,
        drift.counted_quantity,
        drift.variance,
        drift.unit_cost,
        drift.variance_value,
        drift.tolerance_pct,
        drift.within_tolerance,
    )


EXPECTED_COUNT_DRIFTS = [
    (1, "alice", DOCK, GTIN_A, "A", 100.0, 101.0, 1.0, 10.0, 10.0, 1.0, True),
    (2, "alice", DOCK, GTIN_B, "B", 50.0, 47.0, -3.0, 2.5, -7.5, 3.0, False),
    (3, "bob", STORAGE, GTIN_C, "C", 20.0, 21.0, 1.0, 4.0, 4.0, 5.0, True),
    (4, "bob", STORAGE, GTIN_A, "A", 3.0, 3.0, 0.0, 10.0, 0.0, 1.0, True),
    (5, "bob", STORAGE, GTIN_UNKNOWN, "", 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, False),
]


def accuracy(group: reconciliation_pb2.RecordAccuracy) -> tuple[Any, ...]:
    return (
        group.key,
        group.counts,
        group.accurate,
        group.record_accuracy if group.HasField("record_accuracy") else None,
        group.system_value,
        group.gross_variance_value,
        group.dollar_accuracy if group.HasField("dollar_accuracy") else None,
    )


async def import_and_reconcile_counts(stub: Any) -> reconciliation_pb2.ReconcileResponse:
    imported = await stub.ImportCycleCounts(R.ImportCycleCountsRequest(label="counts.csv", rows=count_rows()))
    assert imported.accepted == 5
    assert [(r.row, r.reason) for r in imported.rejections] == [(6, "gtin '123': expected 8, 12, 13 or 14 digits")]
    reply: reconciliation_pb2.ReconcileResponse = await stub.Reconcile(
        R.ReconcileRequest(cycle_count_batch_id=imported.batch_id)
    )
    assert reply.summary.subject_id == imported.batch_id
    return reply


async def test_cycle_counts_give_every_drift_and_the_epc_differences_exactly(stub: Any, clock: ManualClock) -> None:
    clock.advance(10)
    reply = await import_and_reconcile_counts(stub)
    assert [drift_fields(drift) for drift in reply.drifts] == EXPECTED_COUNT_DRIFTS
    assert {drift.counted_at.seconds for drift in reply.drifts} == {COUNTED_AT_S}
    assert {drift.source_kind for drift in reply.drifts} == {R.SOURCE_KIND_CYCLE_COUNT}
    assert [(e.biz_location, e.gtin, e.epc, e.kind, e.system_location) for e in reply.epc_drifts] == [
        (STORAGE, GTIN_A, item(GTIN_A, "2003").epc_uri, R.EPC_DRIFT_KIND_MISSING, STORAGE),
        (STORAGE, GTIN_A, item(GTIN_A, "2004").id, R.EPC_DRIFT_KIND_UNEXPECTED, DOOR_A),
    ]
    summary = reply.summary
    assert (summary.source, summary.rows_compared, summary.accurate) == ("2 counters", 5, 3)
    assert summary.record_accuracy == 0.6
    assert (summary.gross_variance_value, summary.net_variance_value, summary.system_value) == (21.5, 6.5, 1235.0)
    assert summary.dollar_accuracy == 1 - 21.5 / 1235
    assert (summary.missing_epcs, summary.unexpected_epcs) == (1, 1)
    assert summary.taken_at.seconds == COUNTED_AT_S
    assert summary.recorded_at.ToMicroseconds() == RECEIVED_AT_US + 10_000_000
    assert not reply.already_reconciled and not reply.truncated

    # Comparing the same batch again would count its counts twice: the recorded run comes back.
    again = await stub.Reconcile(R.ReconcileRequest(cycle_count_batch_id=summary.subject_id))
    assert again.already_reconciled
    assert again.summary == summary
    assert list(again.drifts) == list(reply.drifts)
    assert list(again.epc_drifts) == list(reply.epc_drifts)


async def test_kpis_give_exact_accuracy_freshness_and_data_quality(stub: Any, clock: ManualClock) -> None:
    await import_and_reconcile_counts(stub)
    clock.advance(400)  # the gateway last spoke at RECEIVED_AT: 400 s ago, past the 300 s SLA
    kpis = await stub.GetKpis(R.GetKpisRequest())
    assert kpis.until.ToMicroseconds() == RECEIVED_AT_US + 400_000_000
    assert kpis.since.ToMicroseconds() == RECEIVED_AT_US + 400_000_000 - 24 * 3600 * 1_000_000

    assert accuracy(kpis.record_accuracy) == ("", 5, 3, 0.6, 1235.0, 21.5, 1 - 21.5 / 1235)
    assert [accuracy(group) for group in kpis.record_accuracy_by_location] == [
        (STORAGE, 3, 2, 2 / 3, 110.0, 4.0, 1 - 4 / 110),
        (DOCK, 2, 1, 0.5, 1125.0, 17.5, 1 - 17.5 / 1125),
    ]
    assert [accuracy(group) for group in kpis.record_accuracy_by_abc_class] == [
        ("", 1, 0, 0.0, 0.0, 0.0, None),  # no system value: dollar accuracy undefined
        ("A", 2, 2, 1.0, 1030.0, 10.0, 1 - 10 / 1030),
        ("B", 1, 0, 0.0, 125.0, 7.5, 1 - 7.5 / 125),
        ("C", 1, 1, 1.0, 80.0, 4.0, 1 - 4 / 80),
    ]
    assert list(kpis.snapshot_agreement_by_source) == []

    assert [(f.gateway_id, f.last_contact.ToMicroseconds(), f.age_s, f.sla_s, f.fresh) for f in kpis.freshness] == [
        (GATEWAY, RECEIVED_AT_US, 400.0, 300.0, False)
    ]

    (feed,) = kpis.data_quality
    assert (feed.gateway_id, feed.expected_seqs, feed.lost_seqs) == (GATEWAY, 8, 2)
    assert (feed.events_in_window, feed.on_time_events) == (5, 3)  # lags 62, 61 | 60, 59, 58 s
    assert (feed.events_stored, feed.duplicates, feed.rejects) == (5, 2, 1)
    assert feed.completeness == 0.75
    assert feed.timeliness == 0.6
    assert feed.consistency == 1 - 3 / 8
    assert feed.validity == 5 / 6
    assert feed.lag_s_mean == 60.0
    assert feed.score == pytest.approx(0.35 * 0.75 + 0.25 * 0.6 + 0.20 * 0.625 + 0.20 * (5 / 6), abs=1e-12)
    assert dict(kpis.data_quality_weights) == {
        "completeness": 0.35,
        "timeliness": 0.25,
        "consistency": 0.20,
        "validity": 0.20,
    }
    assert (kpis.freshness_sla_s, kpis.timeliness_sla_s) == (300.0, 60.0)

    # A window that ends before the counts were taken holds none of them.
    narrow = await stub.GetKpis(R.GetKpisRequest(window=Duration(seconds=60)))
    assert (narrow.record_accuracy.counts, narrow.record_accuracy.HasField("record_accuracy")) == (0, False)


async def test_exception_kpis_come_from_the_exceptions_subsystem(stub: Any, server: CloudServer) -> None:
    kpis = await stub.GetKpis(R.GetKpisRequest())
    async with server.reconciler.repository.store.read() as sql:
        stats = await exception_stats(sql, kpis.since.ToMicroseconds(), kpis.until.ToMicroseconds())
    exceptions = kpis.exceptions
    assert (exceptions.raised, exceptions.resolved, exceptions.open) == (stats.raised, stats.resolved, stats.open)
    assert dict(exceptions.raised_by_rule) == dict(stats.by_rule)
    for name in ("resolution_time_s_mean", "resolution_time_s_p50", "resolution_time_s_p90", "recurrence_rate"):
        assert (getattr(exceptions, name) if exceptions.HasField(name) else None) == getattr(stats, name)


async def test_a_snapshot_is_compared_as_set_on_hand_at_the_locations_it_lists(stub: Any) -> None:
    imported = await stub.ImportSnapshot(
        R.ImportSnapshotRequest(
            source="wms",
            taken_at=at(BASE_S + 30),
            rows=[
                R.SnapshotRow(biz_location=DOCK, gtin=GTIN_A, quantity=100),
                R.SnapshotRow(biz_location=DOCK, gtin=GTIN_C, quantity=5),
                R.SnapshotRow(biz_location=DOCK, gtin=GTIN_A, quantity=7),  # listed twice
            ],
        )
    )
    assert imported.accepted == 2
    assert [(r.row, r.reason) for r in imported.rejections] == [(3, f"{GTIN_A} at {DOCK} is already listed in row 1")]
    reply = await stub.Reconcile(R.ReconcileRequest(snapshot_source="wms"))
    assert reply.summary.subject_id == imported.snapshot_id
    assert [drift_fields(drift) for drift in reply.drifts] == [
        (1, "wms", DOCK, GTIN_B, "B", 50.0, 0.0, -50.0, 2.5, -125.0, 3.0, False),  # the WMS has none
        (2, "wms", DOCK, GTIN_A, "A", 100.0, 100.0, 0.0, 10.0, 0.0, 1.0, True),
        (3, "wms", DOCK, GTIN_C, "C", 0.0, 5.0, 5.0, 4.0, 20.0, 5.0, False),  # the events never put it there
    ]  # the aisle and door A are not in this snapshot's scope
    assert {drift.counted_at.seconds for drift in reply.drifts} == {BASE_S + 30}
    kpis = await stub.GetKpis(R.GetKpisRequest())
    assert [accuracy(group) for group in kpis.snapshot_agreement_by_source] == [
        ("wms", 3, 1, 1 / 3, 1125.0, 145.0, 1 - 145 / 1125)
    ]
    assert kpis.record_accuracy.counts == 0  # snapshots are not cycle counts


async def test_list_drifts_filters_and_pages_newest_first(stub: Any) -> None:
    reply = await import_and_reconcile_counts(stub)
    bad = await stub.ListDrifts(R.ListDriftsRequest(out_of_tolerance_only=True))
    assert [(d.row, d.gtin) for d in bad.drifts] == [(5, GTIN_UNKNOWN), (2, GTIN_B)]
    assert bad.next_page_token == ""
    seen: list[int] = []
    request = R.ListDriftsRequest(run_id=reply.summary.run_id, page_size=2)
    while True:
        page = await stub.ListDrifts(request)
        seen += [drift.row for drift in page.drifts]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert seen == [5, 4, 3, 2, 1]
    by_place = await stub.ListDrifts(R.ListDriftsRequest(biz_location=DOCK, abc_class="B"))
    assert [drift_fields(d) for d in by_place.drifts] == [EXPECTED_COUNT_DRIFTS[1]]
    none = await stub.ListDrifts(R.ListDriftsRequest(source_kind=R.SOURCE_KIND_SNAPSHOT))
    assert list(none.drifts) == []


async def test_pull_is_fresh_then_stale_while_the_erp_is_down_then_unavailable(
    stub: Any, erp: SnapshotHttpServer, clock: ManualClock
) -> None:
    erp.answer_json({"taken_at": "2025-01-31T12:00:30Z", "rows": [{"location": DOCK, "gtin": GTIN_B, "quantity": 49}]})
    fresh = await stub.PullSnapshot(R.PullSnapshotRequest(reconcile=True))
    assert (fresh.status, fresh.source, fresh.rows, fresh.error) == (R.SNAPSHOT_STATUS_FRESH, "erp", 1, "")
    assert fresh.taken_at.seconds == BASE_S + 30
    assert fresh.pulled_at.ToMicroseconds() == RECEIVED_AT_US
    assert fresh.reconciliation.summary.subject_id == fresh.snapshot_id
    assert [drift_fields(d) for d in fresh.reconciliation.drifts] == [
        (1, "erp", DOCK, GTIN_B, "B", 50.0, 49.0, -1.0, 2.5, -2.5, 3.0, True),
        (2, "erp", DOCK, GTIN_A, "A", 100.0, 0.0, -100.0, 10.0, -1000.0, 1.0, False),
    ]

    await erp.close()
    clock.advance(30)
    stale = await stub.PullSnapshot(R.PullSnapshotRequest(reconcile=True))
    assert (stale.status, stale.snapshot_id, stale.age_s) == (R.SNAPSHOT_STATUS_STALE, fresh.snapshot_id, 30.0)
    assert stale.pulled_at == fresh.pulled_at
    assert "ConnectError" in stale.error
    assert not stale.HasField("reconciliation")  # it was compared when it was fresh

    clock.advance(TTL_S)
    gone = await stub.PullSnapshot(R.PullSnapshotRequest())
    assert (gone.status, gone.snapshot_id, gone.rows) == (R.SNAPSHOT_STATUS_UNAVAILABLE, "", 0)
    assert "past snapshot_ttl_s" in gone.error


async def test_bad_requests_get_clear_status_codes(stub: Any) -> None:
    cases = [
        (stub.Reconcile(R.ReconcileRequest()), grpc.StatusCode.INVALID_ARGUMENT, "name a subject"),
        (stub.Reconcile(R.ReconcileRequest(snapshot_id="nope")), grpc.StatusCode.NOT_FOUND, "no snapshot 'nope'"),
        (
            stub.Reconcile(R.ReconcileRequest(snapshot_source="sap")),
            grpc.StatusCode.NOT_FOUND,
            "no snapshot from source 'sap'",
        ),
        (stub.ListDrifts(R.ListDriftsRequest(page_token="x!")), grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
        (stub.ListDrifts(R.ListDriftsRequest(page_size=1001)), grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        (
            stub.GetKpis(R.GetKpisRequest(window=Duration(seconds=-1))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "window",
        ),
        (stub.ImportSnapshot(R.ImportSnapshotRequest(source=" ")), grpc.StatusCode.INVALID_ARGUMENT, "source is empty"),
    ]
    for call, code, text in cases:
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == code
        assert text in (caught.value.details() or "")


def test_the_service_is_registered_for_health_and_reflection() -> None:
    assert "tallyport.v1.ReconciliationService" in SERVICE_NAMES


async def test_the_server_pulls_and_reconciles_periodically_and_stops_polling_when_it_stops(
    store_section: dict[str, Any], erp: SnapshotHttpServer
) -> None:
    erp.answer_json({"taken_at": "2025-01-31T12:00:30Z", "rows": [{"location": DOCK, "gtin": GTIN_B, "quantity": 49}]})
    settings = {"erp_url": erp.url, "erp_source": "erp", "poll_interval_s": 1, "erp_timeout_ms": 2000}
    config = cloud_config(store_section).model_copy(
        update={"reconciliation": ReconciliationSection.model_validate(settings)}
    )
    async with CloudServer(config) as server, aio.insecure_channel(server.target) as channel:
        stub = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
        request = R.ListDriftsRequest(source_kind=R.SOURCE_KIND_SNAPSHOT, source="erp")
        async with asyncio.timeout(30):  # the first pull happens at start; wait for its drift to be recorded
            while not (listed := await stub.ListDrifts(request)).drifts:
                await asyncio.sleep(0.05)
        assert [(d.biz_location, d.gtin, d.system_quantity, d.counted_quantity) for d in listed.drifts] == [
            (DOCK, GTIN_B, 0.0, 49.0)
        ]
        polling = server._reconciliation_polling
        assert polling is not None and not polling.done()
    assert polling.cancelled()
