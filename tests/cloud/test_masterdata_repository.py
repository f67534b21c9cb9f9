"""The master data repository on each store (SQLite and PostgreSQL): round trips, checked loads, the snapshot cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cloud_testkit import StoreOpener

from cloud.errors import StoreError
from cloud.masterdata.loading import load_files_into
from cloud.masterdata.models import (
    LEVEL_RANK,
    ConditionRange,
    CustomerTier,
    Location,
    MasterData,
    MasterDataError,
    RowRejection,
    Sku,
)
from cloud.masterdata.repository import MasterDataRepository
from cloud.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
GTIN = "09501101530003"
SITE = Location("urn:loc:dc1", "DC1", "site", location_type="distribution_center")
COLD = Location("urn:loc:dc1:cold", "Cold room", "zone", SITE.location_id, "cold_storage", "strategic")
PROBE = Location("urn:rp:dc1:cold", "Cold probe", "read_point", COLD.location_id, "sensor")
TIERS = [CustomerTier("strategic", 3.0, "key accounts"), CustomerTier("basic", 1.0)]
VACCINE = Sku(
    GTIN,
    "Vaccine 10x0.5 ml",
    184.25,
    "EUR",
    ConditionRange(2.0, 8.0, None, 60.0),
    "A",
    "phase_out",
    "strategic",
    5200.0,
)
GEL = Sku("05901234123457", "Gel", 3.1)


class FakeTime:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """Wraps a store and counts `read()` calls: how often the snapshot went to the database."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def read(self) -> object:
        self.reads += 1
        return self.inner.read()


async def test_records_round_trip(open_test_store: StoreOpener) -> None:
    repository = MasterDataRepository(await open_test_store())
    assert await repository.snapshot() == MasterData.empty()
    assert await repository.upsert_tiers(TIERS) == 2
    assert await repository.upsert_locations([PROBE, COLD, SITE]) == 3
    assert await repository.upsert_skus([VACCINE, GEL]) == 2
    snapshot = await repository.snapshot()
    assert snapshot.sku(GTIN) == VACCINE
    assert snapshot.sku(GEL.gtin) == GEL
    assert snapshot.ancestors(PROBE.location_id) == [PROBE, COLD, SITE]
    assert snapshot.tiers == {tier.name: tier for tier in TIERS}
    assert snapshot.service_weight(GEL.gtin, PROBE.location_id) == 3.0
    assert await repository.list_skus(10) == [GEL, VACCINE]  # by GTIN
    assert await repository.list_locations(2) == [SITE, COLD]
    assert await repository.list_tiers(10) == [TIERS[1], TIERS[0]]


async def test_an_upsert_replaces_by_key(open_test_store: StoreOpener) -> None:
    repository = MasterDataRepository(await open_test_store())
    await repository.upsert_tiers(TIERS)
    await repository.upsert_skus([VACCINE])
    cheaper = Sku(GTIN, "Vaccine, new pack", 150.0, abc_class="B")  # no condition any more
    await repository.upsert_skus([cheaper])
    assert (await repository.snapshot()).skus == {GTIN: cheaper}


async def test_a_location_breaking_the_hierarchy_fails_the_whole_trusted_upsert(open_test_store: StoreOpener) -> None:
    repository = MasterDataRepository(await open_test_store())
    with pytest.raises(MasterDataError, match="location 'urn:loc:dc1:cold': parent_id 'urn:loc:dc1': no such"):
        await repository.upsert_locations([COLD])
    assert await repository.list_locations(10) == []


async def test_checked_loads_store_the_good_rows_and_answer_the_bad(open_test_store: StoreOpener) -> None:
    repository = MasterDataRepository(await open_test_store())
    assert await repository.load_tiers([TIERS[0], CustomerTier("strategic", 2.0)]) == [
        RowRejection(1, "'strategic' is already given by row 0")
    ]
    orphan = Location("urn:loc:dc1:door", "Door", "door", "urn:loc:dc1:dock")
    gold = Location("urn:loc:dc1:vip", "VIP lane", "zone", SITE.location_id, customer_tier="gold")
    rejections = await repository.load_locations([PROBE, orphan, SITE, gold, COLD])
    assert rejections == [
        RowRejection(1, "parent_id 'urn:loc:dc1:dock': no such location (load parents first or in the same batch)"),
        RowRejection(3, "customer_tier 'gold' is not a known tier (known: strategic)"),
    ]
    assert await repository.load_skus([GEL, Sku(GTIN, "Vaccine", 1.0, customer_tier="basic")]) == [
        RowRejection(1, "customer_tier 'basic' is not a known tier (known: strategic)")
    ]
    snapshot = await repository.snapshot()
    assert set(snapshot.locations) == {SITE.location_id, COLD.location_id, PROBE.location_id}
    assert set(snapshot.skus) == {GEL.gtin}


async def test_a_relevelled_location_must_keep_its_stored_children_below(open_test_store: StoreOpener) -> None:
    repository = MasterDataRepository(await open_test_store())
    await repository.upsert_tiers(TIERS)
    await repository.upsert_locations([SITE, COLD, PROBE])
    as_read_point = Location(COLD.location_id, "Cold room", "read_point", SITE.location_id)
    assert await repository.load_locations([as_read_point]) == [
        RowRejection(0, "level read_point: its read_point 'urn:rp:dc1:cold' would no longer nest")
    ]
    assert (await repository.snapshot()).location(COLD.location_id) == COLD


async def test_the_snapshot_is_cached_until_a_write_or_its_age(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    counting = CountingStore(store)
    time = FakeTime()
    repository = MasterDataRepository(counting, snapshot_max_age_s=5.0, monotonic=time)  # type: ignore[arg-type]
    other_instance = MasterDataRepository(store)  # another aggregator on the same database
    first = await repository.snapshot()
    assert await repository.snapshot() is first
    assert counting.reads == 1
    await repository.upsert_skus([GEL])  # a write through this repository: seen at once
    assert (await repository.snapshot()).sku(GEL.gtin) == GEL
    assert counting.reads == 2
    await other_instance.upsert_skus([Sku(GTIN, "Vaccine", 1.0)])
    time.now += 5.0
    assert (await repository.snapshot()).sku(GTIN) is None  # not older than 5 s yet: cached
    time.now += 0.1
    assert (await repository.snapshot()).sku(GTIN) == Sku(GTIN, "Vaccine", 1.0)
    assert counting.reads == 3


async def test_a_failing_reread_serves_the_last_snapshot(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    time = FakeTime()
    repository = MasterDataRepository(store, snapshot_max_age_s=1.0, monotonic=time)
    await repository.upsert_skus([GEL])
    served = await repository.snapshot()
    await store.close()  # every read now fails
    time.now += 10.0
    assert await repository.snapshot() is served
    with pytest.raises(StoreError):
        await MasterDataRepository(store).snapshot()  # nothing cached to fall back on


async def test_the_demo_file_loads_into_the_store(open_test_store: StoreOpener) -> None:
    repository = MasterDataRepository(await open_test_store())
    stored, rejections = await load_files_into(repository, [REPO_ROOT / "deploy" / "demo" / "masterdata.toml"])
    assert rejections == []
    snapshot = await repository.snapshot()
    assert stored == len(snapshot.skus) + len(snapshot.locations) + len(snapshot.tiers)
    door_b = "urn:tallyport:rp:dc1:door-b"
    assert [location.level for location in snapshot.ancestors(door_b)] == ["read_point", "door", "zone", "site"]
    assert snapshot.within("urn:tallyport:loc:dc1:dock-4", "dock_staging") is not None
    assert snapshot.service_weight("05901234123457", door_b) == 3.0


async def test_two_instances_changing_the_hierarchy_at_once_never_break_it(open_test_store: StoreOpener) -> None:
    # Two aggregators (two stores, two pools on one database): one re-levels a zone into a door while
    # the other hangs a door under that zone. Whichever commits first wins; the other is rejected.
    first, second = MasterDataRepository(await open_test_store()), MasterDataRepository(await open_test_store())
    for round_number in range(10):
        zone = Location(f"urn:loc:dc1:z{round_number}", "Zone", "zone", SITE.location_id)
        await first.upsert_locations([SITE, zone])
        relevel = Location(zone.location_id, "Now a door", "door", SITE.location_id)
        child = Location(f"urn:loc:dc1:z{round_number}:door", "Door", "door", zone.location_id)
        outcomes = await asyncio.gather(first.load_locations([relevel]), second.load_locations([child]))
        assert sorted(len(rejections) for rejections in outcomes) == [0, 1], outcomes
        stored = {location.location_id: location for location in await first.list_locations(1000)}
        for location in stored.values():
            if location.parent_id:
                assert LEVEL_RANK[stored[location.parent_id].level] < LEVEL_RANK[location.level], location
