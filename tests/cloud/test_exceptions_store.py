"""The exceptions' tables on SQLite and PostgreSQL: one open exception per rule x subject, the
version check, the KPIs with exact values, and two aggregators racing on one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cloud_testkit import StoreOpener, gtin
from exceptions_testkit import MICROS, PICK, STORAGE, ManualClock, site_locations, site_tiers

from cloud.config import CloudConfig
from cloud.exceptions import lifecycle
from cloud.exceptions import store as repo
from cloud.exceptions.config import parse_rules
from cloud.exceptions.engine import ExceptionEngine
from cloud.exceptions.kpis import exception_stats
from cloud.exceptions.models import Condition, ExceptionRecord, Policy
from cloud.exceptions.priority import priority_score
from cloud.masterdata.models import MasterData, Sku
from cloud.store import Store
from cloud.store.postgres_store import PostgresStore

T0 = 1_738_325_800 * MICROS


def at(seconds: float) -> int:
    return T0 + round(seconds * MICROS)


def raised(rule: str, subject: str, when_s: float, exception_id: str) -> ExceptionRecord:
    condition = Condition(rule, subject, True, Policy(), "minor")
    return lifecycle.raise_exception(condition, priority_score(0, 0, 1, "minor"), at(when_s), exception_id).record


async def write_raised(store: Store, record: ExceptionRecord) -> bool:
    async with store.write() as sql:
        return await repo.insert_exception(sql, record)


async def write_resolved(store: Store, record: ExceptionRecord, when_s: float) -> ExceptionRecord:
    change = lifecycle.resolve(record, "ann", "fixed", at(when_s))
    async with store.write() as sql:
        assert await repo.update_exception(sql, change.record, record.version)
        await repo.insert_transitions(sql, change.transitions)
    return change.record


async def test_one_open_exception_per_rule_and_subject(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    first = raised("dwell", "pallet-1", 0, "ex-1")
    assert await write_raised(store, first)
    assert not await write_raised(store, raised("dwell", "pallet-1", 5, "ex-2"))  # same key while open
    await write_resolved(store, first, 10)
    assert await write_raised(store, raised("dwell", "pallet-1", 20, "ex-3"))  # free again once resolved
    async with store.read() as sql:
        found = await repo.load_open(sql, ["dwell|pallet-1"])
        assert [record.exception_id for record in found.values()] == ["ex-3"]
        assert (await repo.get_exception(sql, "ex-1")).state == "resolved"  # type: ignore[union-attr]
        assert [t.action for t in await repo.transitions_of(sql, "ex-1")] == ["resolve"]


async def test_an_update_from_a_stale_version_changes_nothing(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    record = raised("excess", "g@l", 0, "ex-1")
    await write_raised(store, record)
    acked = lifecycle.acknowledge(record, "ann", "", at(1)).record
    async with store.write() as sql:
        assert await repo.update_exception(sql, acked, expected_version=1)
        assert not await repo.update_exception(sql, acked, expected_version=1)  # someone else wrote version 2
        current = await repo.get_exception(sql, "ex-1")
    assert current is not None and (current.version, current.state) == (2, "acknowledged")


async def test_kpis_of_a_window(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    first = raised("stockout", "s1", 0, "ex-a1")
    await write_raised(store, first)
    await write_resolved(store, first, 60)
    again = raised("stockout", "s1", 100, "ex-a2")  # the same rule x subject comes back
    await write_raised(store, again)
    await write_resolved(store, again, 400)
    await write_raised(store, raised("stockout", "s2", 200, "ex-b"))  # still open
    before = raised("dwell", "d1", -1000, "ex-c")  # raised before the window, resolved inside it
    await write_raised(store, before)
    await write_resolved(store, before, 50)
    await write_raised(store, raised("dwell", "d2", 2000, "ex-d"))  # after the window
    async with store.read() as sql:
        stats = await exception_stats(sql, at(0), at(1000))
    assert (stats.raised, stats.resolved, stats.open) == (3, 3, 1)
    assert stats.resolution_time_s_mean == pytest.approx((60 + 300 + 1050) / 3)
    assert (stats.resolution_time_s_p50, stats.resolution_time_s_p90) == (300.0, 1050.0)
    assert stats.recurrence_rate == pytest.approx(1 / 3)
    assert dict(stats.by_rule) == {"stockout": 3}
    async with store.read() as sql:
        empty = await exception_stats(sql, at(5000), at(6000))
    assert (empty.raised, empty.resolved, empty.recurrence_rate, empty.resolution_time_s_p50) == (0, 0, None, None)


# ---- two aggregators on one PostgreSQL database --------------------------------------------------

SKU_COUNT = 40
RULES = {
    "defaults": {"response_s": 60, "escalation_roles": ["shift_lead"], "escalation_interval_s": 600},
    "rule": [
        {"kind": "stockout", "location": PICK, "min_on_hand": 3},
        {"kind": "stockout", "location": STORAGE, "min_on_hand": 3},
    ],
}


def crowded_master() -> MasterData:
    skus = [Sku(gtin(f"{9_000_000_000_000 + n:013d}"), f"sku {n}", 1.0 + n) for n in range(SKU_COUNT)]
    return MasterData.of(skus, site_locations(), site_tiers())


@pytest.fixture
async def two_instances(postgres_dsn: str, postgres_schema: str) -> AsyncIterator[list[PostgresStore]]:
    stores = [await PostgresStore.open(postgres_dsn, postgres_schema) for _ in range(2)]
    yield stores
    for store in stores:
        await store.close()


def engine_on(store: Store, clock: Callable[[], int]) -> ExceptionEngine:
    master = crowded_master()

    async def master_data() -> MasterData:
        return master

    section = CloudConfig().exceptions
    return ExceptionEngine(store, section, parse_rules(RULES, "test"), master_data=master_data, clock=clock)


async def test_two_aggregators_racing_keep_one_open_exception_per_key(two_instances: list[PostgresStore]) -> None:
    clock = ManualClock(T0 / MICROS)
    engines = [engine_on(store, clock) for store in two_instances]
    for _ in range(3):  # both find the same 80 conditions at the same moment, three times over
        await asyncio.gather(*(engine.sweep() for engine in engines))
    async with two_instances[0].read() as sql:
        rows = await sql.fetch_all("SELECT open_key, COUNT(*) FROM exceptions GROUP BY open_key")
        raises = await sql.fetch_all("SELECT COUNT(*) FROM exception_transitions WHERE action = 'raise'")
    assert len(rows) == 2 * SKU_COUNT and {count for _, count in rows} == {1}
    assert raises == [(2 * SKU_COUNT,)]
    clock.advance(60)  # every one is now overdue: both instances try to escalate it
    await asyncio.gather(*(engine.sweep() for engine in engines))
    async with two_instances[1].read() as sql:
        escalations = await sql.fetch_all(
            "SELECT exception_id, COUNT(*) FROM exception_transitions WHERE action = 'escalate' GROUP BY exception_id"
        )
        levels = await sql.fetch_all("SELECT DISTINCT escalation_level, owner_role FROM exceptions")
    assert len(escalations) == 2 * SKU_COUNT and {count for _, count in escalations} == {1}  # once per level
    assert levels == [(1, "shift_lead")]


async def test_two_aggregators_acknowledging_at_once_record_it_once(two_instances: list[PostgresStore]) -> None:
    clock = ManualClock(T0 / MICROS)
    engines = [engine_on(store, clock) for store in two_instances]
    await engines[0].sweep()
    target = (await engines[0].list_exceptions(repo.ExceptionFilter(), 1))[0].exception_id
    outcomes: list[Any] = await asyncio.gather(
        *(engine.acknowledge(target, f"op-{n}", "mine") for n, engine in enumerate(engines)), return_exceptions=True
    )
    refused = [outcome for outcome in outcomes if isinstance(outcome, lifecycle.LifecycleError)]
    assert len(refused) == 1 and "already acknowledged" in str(refused[0])
    _, trail = await engines[1].get(target)
    assert [t.action for t in trail] == ["raise", "acknowledge"]
