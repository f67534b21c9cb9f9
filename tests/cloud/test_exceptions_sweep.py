"""How the exception engine sweeps, on SQLite and PostgreSQL: planned outside any write
transaction, written in chunks of `SWEEP_CHUNK_KEYS` keys each committed and published on its
own, with the ingest hook let in between chunks; sweeps kept apart; the excursion rule judging
each series once per condition range; strings with a NUL stored from the hook.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from cloud_testkit import StoreOpener, gtin
from exceptions_testkit import COLD_ROOM, MICROS, PICK, STORAGE, ManualClock, sensor_event, site_locations, site_tiers

from cloud.config import CloudConfig
from cloud.exceptions import lifecycle
from cloud.exceptions import store as repo
from cloud.exceptions.config import parse_rules
from cloud.exceptions.engine import ExceptionEngine, min_sweep_gap_s
from cloud.exceptions.hub import Subscriber
from cloud.exceptions.models import Condition, ExceptionChange, Policy
from cloud.exceptions.priority import priority_score
from cloud.exceptions.rules import ReadModel, SensorReading, excursion
from cloud.masterdata.models import ConditionRange, MasterData, Sku
from cloud.store import OnHandRecord, Store
from cloud.store.postgres_store import PostgresStore

T0 = 1_738_325_800 * MICROS
SKU_COUNT = 450  # x 2 locations: 900 stockouts, five chunks of at most 200
RULES: dict[str, Any] = {
    "rule": [
        {"kind": "stockout", "location": PICK, "min_on_hand": 3},
        {"kind": "stockout", "location": STORAGE, "min_on_hand": 3},
        {"kind": "excursion"},  # so the hook has readings to write
    ],
}


def crowded_engine(store: Store, clock: ManualClock | None = None, sku_count: int = SKU_COUNT) -> ExceptionEngine:
    skus = [Sku(gtin(f"{9_000_000_000_000 + n:013d}"), f"sku {n}", 1.0 + n) for n in range(sku_count)]
    master = MasterData.of(skus, site_locations(), site_tiers())

    async def master_data() -> MasterData:
        return master

    section = CloudConfig().exceptions
    clock = clock if clock is not None else ManualClock(T0 / MICROS)
    return ExceptionEngine(store, section, parse_rules(RULES, "test"), master_data=master_data, clock=clock)


def record_publishes(engine: ExceptionEngine) -> list[int]:
    """The size of each non-empty batch the engine publishes to a subscriber (one per committed write)."""
    sizes: list[int] = []
    publish = engine.hub.publish
    engine.hub.subscribe()  # with nobody subscribed the feed skips ahead, publishing nothing

    def recording(changes: Sequence[ExceptionChange]) -> None:
        if changes:
            sizes.append(len(changes))
        publish(changes)

    engine.hub.publish = recording  # type: ignore[method-assign]
    return sizes


async def test_a_large_sweep_commits_and_publishes_chunk_by_chunk(open_test_store: StoreOpener) -> None:
    # A timeout that one transaction of 900 raises would not meet on PostgreSQL (about 0.5 ms a raise).
    store = await open_test_store(operation_timeout_ms=1000)
    engine = crowded_engine(store)
    sizes = record_publishes(engine)
    report = await engine.sweep()
    assert report.conditions == 2 * SKU_COUNT
    assert sizes == [200, 200, 200, 200, 100]
    async with store.read() as sql:
        assert await sql.fetch_all("SELECT COUNT(*) FROM exceptions WHERE state = 'open'") == [(2 * SKU_COUNT,)]
    sizes.clear()
    again = await engine.sweep()  # nothing changed: nothing planned, nothing written
    assert (again.changes, sizes) == ((), [])


async def test_the_ingest_hook_writes_between_two_chunks_of_a_sweep(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    engine = crowded_engine(store)
    first_chunk = asyncio.Event()
    publish = engine.hub.publish

    def noting(changes: Sequence[ExceptionChange]) -> None:
        publish(changes)
        first_chunk.set()

    engine.hub.publish = noting  # type: ignore[method-assign]
    sweeping = asyncio.create_task(engine.sweep())
    await first_chunk.wait()
    await engine.on_commit([sensor_event(1, 5.0, T0 / MICROS)])  # waits for the chunk in hand at most
    assert not sweeping.done()  # the hook's write went in while the sweep had chunks left
    async with store.read() as sql:
        assert len(await repo.load_readings(sql, 0)) == 1
        written = (await sql.fetch_all("SELECT COUNT(*) FROM exceptions"))[0][0]
    assert 200 <= written < 2 * SKU_COUNT
    report = await sweeping
    assert len(report.changes) == 2 * SKU_COUNT


async def test_a_chunk_rereads_an_exception_changed_since_the_sweep_planned(open_test_store: StoreOpener) -> None:
    # An operator acknowledges between a sweep's planning and its writes: the write finds a newer
    # version than planned, re-reads it and applies the change to it, keeping the acknowledgement.
    store = await open_test_store()
    clock = ManualClock(T0 / MICROS)
    engine = crowded_engine(store, clock)
    await engine.sweep()
    target = (await engine.list_exceptions(repo.ExceptionFilter(), 1))[0]
    write_steps = engine._write_steps
    acknowledged: list[ExceptionChange] = []

    async def acknowledge_first(*args: Any) -> list[ExceptionChange]:
        if not acknowledged:
            acknowledged.append(await engine.acknowledge(target.exception_id, "ann", "mine"))
        return await write_steps(*args)

    engine._write_steps = acknowledge_first  # type: ignore[method-assign,assignment]
    clock.advance(120)  # every last_seen is due a refresh: every key is planned, from version 1
    await engine.sweep()
    found, trail = await engine.get(target.exception_id)
    assert (found.state, found.version) == ("acknowledged", 3)
    assert found.last_seen_us == T0 + 120 * MICROS
    assert [t.action for t in trail] == ["raise", "acknowledge"]


def test_sweeps_are_kept_apart_by_the_commit_delay_or_a_fifth_of_the_interval() -> None:
    assert min_sweep_gap_s(5000, 500) == 1.0  # the defaults: at most one sweep a second under ingest
    assert min_sweep_gap_s(5000, 2000) == 2.0
    assert min_sweep_gap_s(100, 0) == 0.02


def test_the_excursion_rule_judges_each_series_once_per_condition_range(monkeypatch: pytest.MonkeyPatch) -> None:
    chilled = ConditionRange(temperature_min_c=2.0, temperature_max_c=8.0)
    skus = [Sku(gtin(f"{9_100_000_000_000 + n:013d}"), f"chilled {n}", 1.0, condition=chilled) for n in range(50)]
    master = MasterData.of(skus, site_locations(), site_tiers())
    rules = parse_rules({"rule": [{"kind": "excursion", "tolerance_s": 30}]}, "test")
    # Two probes, their readings delivered newest first: the rule must not depend on the order.
    readings = [
        SensorReading(COLD_ROOM, "temperature", probe, T0 + seconds * MICROS, value)
        for probe in ("probe-1", "probe-2")
        for seconds, value in ((60, 9.0), (20, 9.5), (0, 5.0))
    ]
    on_hand = [OnHandRecord(sku.gtin, COLD_ROOM, 1, 0.0) for sku in skus]
    calls: list[str] = []
    newest_run = excursion._newest_run

    def counting(ordered: Sequence[SensorReading], condition: ConditionRange, measurement: str) -> Any:
        calls.append(ordered[0].device_id)
        return newest_run(ordered, condition, measurement)

    monkeypatch.setattr(excursion, "_newest_run", counting)
    model = ReadModel(T0 + 90 * MICROS, master, rules, on_hand=on_hand, readings=readings)
    found = excursion.evaluate(model)
    assert sorted(calls) == ["probe-1", "probe-2"]  # 2 series x 1 range, not x 50 rows
    assert len(found) == 50
    assert all("for 70 s (tolerance 30 s)" in condition.details for condition in found)


async def test_a_nul_in_a_sensor_device_id_is_stored_not_fatal(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    engine = crowded_engine(store)
    await engine.on_commit([sensor_event(1, 5.0, T0 / MICROS, device_id="probe\x00-1")])
    async with store.read() as sql:
        (reading,) = await repo.load_readings(sql, 0)
    assert reading.device_id == ("probe\x00-1" if sql.dialect == "sqlite" else "probe\ufffd-1")


# ---- two aggregators on one PostgreSQL database --------------------------------------------------


@pytest.fixture
async def two_aggregators(postgres_dsn: str, postgres_schema: str) -> AsyncIterator[list[PostgresStore]]:
    stores = [await PostgresStore.open(postgres_dsn, postgres_schema) for _ in range(2)]
    yield stores
    for store in stores:
        await store.close()


def waiting(subscriber: Subscriber) -> list[ExceptionChange]:
    """What the subscriber has been handed and not read yet (its queue, read without waiting)."""
    changes = []
    while not subscriber._queue.empty():
        change = subscriber._queue.get_nowait()
        assert change is not None
        changes.append(change)
    return changes


async def test_subscribers_of_either_aggregator_see_every_change(two_aggregators: list[PostgresStore]) -> None:
    clock = ManualClock(T0 / MICROS)
    engines = [crowded_engine(store, clock, sku_count=40) for store in two_aggregators]
    subscribers = [engine.hub.subscribe() for engine in engines]
    # Both find the same 80 conditions at once; each key is raised by whichever wins its race.
    await asyncio.gather(*(engine.sweep() for engine in engines))
    await asyncio.gather(*(engine.catch_up() for engine in engines))  # as run() does every 0.25 s
    async with two_aggregators[0].read() as sql:
        stored = {row[0] for row in await sql.fetch_all("SELECT exception_id FROM exceptions")}
    assert len(stored) == 80
    for subscriber in subscribers:
        raised = waiting(subscriber)
        assert sorted(change.record.exception_id for change in raised) == sorted(stored)  # each once
        assert all(change.created and [t.action for t in change.transitions] == ["raise"] for change in raised)
    # An operator's action through one aggregator reaches the subscribers of the other.
    target = sorted(stored)[0]
    await engines[0].acknowledge(target, "ann", "mine")
    await engines[1].catch_up()
    for subscriber in subscribers:
        (acknowledged,) = waiting(subscriber)
        assert (acknowledged.record.exception_id, acknowledged.record.state) == (target, "acknowledged")
        assert [t.action for t in acknowledged.transitions] == ["acknowledge"]


async def test_a_transition_committed_after_a_later_one_is_still_published(
    two_aggregators: list[PostgresStore],
) -> None:
    # PostgreSQL numbers transitions at insert: the one numbered first may commit last.
    first, second = two_aggregators
    engine = crowded_engine(second, sku_count=1)
    subscriber = engine.hub.subscribe()
    await engine.catch_up()

    def raised(subject: str, exception_id: str) -> ExceptionChange:
        condition = Condition("stockout", subject, True, Policy(), "minor")
        return lifecycle.raise_exception(condition, priority_score(0, 0, 1, "minor"), T0, exception_id)

    async with first.write() as slow:
        early = raised("s1", "ex-early")
        assert await repo.insert_exception(slow, early.record)
        await repo.insert_transitions(slow, early.transitions)  # numbered before the next one
        async with second.write() as quick:
            late = raised("s2", "ex-late")
            assert await repo.insert_exception(quick, late.record)
            await repo.insert_transitions(quick, late.transitions)
        await engine.catch_up()
        assert [change.record.exception_id for change in waiting(subscriber)] == ["ex-late"]
    await engine.catch_up()
    assert [change.record.exception_id for change in waiting(subscriber)] == ["ex-early"]
