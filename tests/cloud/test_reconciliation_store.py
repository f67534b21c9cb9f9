"""The reconciliation tables on each store (SQLite and PostgreSQL): round trips, one run per subject, paging."""

from __future__ import annotations

from cloud_testkit import DOCK, STORAGE, StoreOpener, Uplink, cloud_config, item, make_event
from grpc import aio
from reconciliation_testkit import GTIN_A, GTIN_B

from cloud.reconciliation.compare import SystemTag, summarize
from cloud.reconciliation.models import CycleCount, Drift, EpcDrift, OnHandSnapshot, SnapshotRow
from cloud.reconciliation.repository import DriftFilter, ReconciliationRepository
from cloud.server import CloudServer


async def test_counts_keep_the_difference_between_no_epc_list_and_an_empty_one(open_test_store: StoreOpener) -> None:
    repository = ReconciliationRepository(await open_test_store())
    counts = [
        CycleCount(DOCK, GTIN_A, 3.5, 11, "alice"),
        CycleCount(DOCK, GTIN_B, 0, 12, "bob", ()),
        CycleCount(STORAGE, GTIN_A, 2, 13, "bob", ("urn:epc:id:sgtin:9501101.053000.1", "30ABC")),
    ]
    batch_id = await repository.save_counts("counts.csv", counts, rejected=1, now_us=99)
    batch = await repository.load_counts(batch_id)
    assert batch is not None
    assert (batch.label, batch.imported_at_us, batch.counts) == ("counts.csv", 99, tuple(counts))
    assert await repository.load_counts("count-unknown") is None


async def test_snapshots_round_trip_and_the_newest_of_a_source_is_found(open_test_store: StoreOpener) -> None:
    repository = ReconciliationRepository(await open_test_store())
    older = OnHandSnapshot("wms", 5, (SnapshotRow(DOCK, GTIN_A, 1.0),))
    newer = OnHandSnapshot("wms", 4, (SnapshotRow(DOCK, GTIN_B, 2.5), SnapshotRow(DOCK, GTIN_A, 7.0)))
    first = await repository.save_snapshot(older, "import", 0, now_us=100)
    second = await repository.save_snapshot(newer, "pull", 2, now_us=200)  # imported later, taken earlier
    await repository.save_snapshot(OnHandSnapshot("erp", 1, ()), "import", 0, now_us=300)
    assert await repository.load_snapshot(first) == older
    loaded = await repository.load_snapshot(second)
    assert loaded is not None and sorted(loaded.rows, key=lambda row: row.gtin) == sorted(
        newer.rows, key=lambda r: r.gtin
    )
    assert await repository.latest_snapshot_id("wms") == second
    assert await repository.latest_snapshot_id("sap") is None


def drift(row: int, within: bool) -> Drift:
    return Drift(
        "cycle_count", "alice", DOCK, GTIN_A, "A", 10.0, 10.0 + row, float(row), 2.0, 2.0 * row, 1.0, within, 7
    )


async def test_a_subject_has_one_run_and_drifts_page_newest_first(open_test_store: StoreOpener) -> None:
    repository = ReconciliationRepository(await open_test_store())
    drifts = [drift(0, True), drift(1, False), drift(2, False)]
    epcs = [EpcDrift(DOCK, GTIN_A, "urn:x", "missing", DOCK), EpcDrift(DOCK, GTIN_A, "30AB", "unexpected", "")]
    summary = summarize("run-1", "cycle_count", "alice", "batch-1", drifts, epcs, 7, 1000)
    assert await repository.save_run(summary, drifts, epcs)
    later = summarize("run-2", "cycle_count", "alice", "batch-1", drifts[:1], [], 7, 2000)
    assert not await repository.save_run(later, drifts[:1], [])  # batch-1 was compared already
    assert await repository.run_of("cycle_count", "batch-1") == "run-1"
    assert await repository.run_of("snapshot", "batch-1") is None
    run = await repository.load_run("run-1")
    assert run is not None
    assert (run.summary, run.drifts, run.epc_drifts) == (summary, tuple(drifts), tuple(epcs))

    other = summarize("run-0", "cycle_count", "bob", "batch-2", drifts[1:2], [], 7, 1000)  # same time, lower run id
    assert await repository.save_run(other, drifts[1:2], [])
    everything = await repository.list_drifts(DriftFilter(), limit=10)
    assert [(row.run_id, row.row_no) for row in everything] == [("run-1", 3), ("run-1", 2), ("run-1", 1), ("run-0", 1)]
    page = await repository.list_drifts(DriftFilter(), limit=2)
    last = page[-1]
    rest = await repository.list_drifts(DriftFilter(), limit=10, before=(last.recorded_at_us, last.run_id, last.row_no))
    assert [(row.run_id, row.row_no) for row in page + rest] == [(r.run_id, r.row_no) for r in everything]
    bad = await repository.list_drifts(
        DriftFilter(out_of_tolerance_only=True, run_id="run-1", source="alice"), limit=10
    )
    assert [(row.run_id, row.row_no, row.drift) for row in bad] == [("run-1", 3, drifts[2]), ("run-1", 2, drifts[1])]
    assert await repository.list_drifts(DriftFilter(since_us=1001), limit=10) == []


async def test_tags_are_found_by_place_and_by_any_spelling(store_section: dict[str, object]) -> None:
    async with CloudServer(cloud_config(store_section)) as server, aio.insecure_channel(server.target) as channel:
        async with Uplink(channel) as uplink:
            await uplink.hello()
            events = [
                make_event(1, biz_location=DOCK, objects=[item(GTIN_A, "1"), item(GTIN_A, "2")]),
                make_event(2, biz_location=STORAGE, objects=[item(GTIN_A, "2")]),
            ]
            await uplink.send(1, events)
        repository = server.reconciler.repository
        at_places = await repository.tags_at({(DOCK, GTIN_A), (STORAGE, GTIN_A), (STORAGE, GTIN_B)})
        one, two = item(GTIN_A, "1"), item(GTIN_A, "2")
        assert at_places == {
            (DOCK, GTIN_A): [SystemTag(one.id, one.epc_uri, one.epc_hex, GTIN_A, DOCK, True, False)],
            (STORAGE, GTIN_A): [SystemTag(two.id, two.epc_uri, two.epc_hex, GTIN_A, STORAGE, True, False)],
            (STORAGE, GTIN_B): [],
        }
        named = await repository.tags_named([one.epc_hex.lower(), two.id, "urn:epc:unknown"])
        assert [tag.object_id for tag in named] == sorted([one.id, two.id])
