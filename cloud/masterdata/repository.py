"""Master data in the store (tables customer_tiers, locations, skus) and a cached snapshot of it.

Two ways in:
- `upsert_skus` / `upsert_locations` / `upsert_tiers`: records the caller vouches for (they are
  valid by construction); all rows are stored, a later row with the same key wins. Only the
  hierarchy is checked (it depends on what is stored): `upsert_locations` raises
  `MasterDataError` and stores nothing if a row would break it.
- `load_skus` / `load_locations` / `load_tiers`: rows from outside (the gRPC API, files), checked
  row by row against each other and against what is stored (a key given twice, an unknown
  parent or customer tier); the good rows are stored, the others come back as `RowRejection`s.

The check and the write run in one transaction. On PostgreSQL, where several aggregators share
the tables, `load_locations` / `upsert_locations` first lock the locations table against other
writers (readers are not blocked), so two instances cannot each attach a child to a parent the
other is re-levelling.

`snapshot()` is what the rules call on every event: it answers from a cache, re-read after a
write through this repository and whenever it is older than `snapshot_max_age_s` (another
aggregator on the same PostgreSQL database may have written). If that re-read fails, the last
snapshot keeps serving (logged once per failure streak) rather than failing the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cloud.errors import StoreError
from cloud.masterdata.models import (
    ConditionRange,
    CustomerTier,
    Location,
    MasterData,
    MasterDataError,
    RowRejection,
    Sku,
    check_duplicates,
    check_locations,
    check_tier_references,
)
from cloud.store import Store
from cloud.store.sql import Sql
from cloud.timestamps import Clock, system_clock_us

__all__ = ["SNAPSHOT_MAX_AGE_S_DEFAULT", "MasterDataRepository"]

log = logging.getLogger(__name__)

SNAPSHOT_MAX_AGE_S_DEFAULT = 5.0
# Rows listed at most per call; master data of a site is far smaller, a runaway query is not.
LIST_ROWS_MAX = 1_000_000

_SKU_COLUMNS = (
    "gtin, description, unit_cost, currency, temperature_min_c, temperature_max_c, humidity_min_pct, "
    "humidity_max_pct, abc_class, lifecycle, customer_tier, annual_usage_units"
)
_LOCATION_COLUMNS = "location_id, name, level, parent_id, location_type, customer_tier"
_TIER_COLUMNS = "name, weight, description"

_UPSERT_SKU = (
    f"INSERT INTO skus ({_SKU_COLUMNS}, updated_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (gtin) DO UPDATE SET description = excluded.description, unit_cost = excluded.unit_cost, "
    "currency = excluded.currency, temperature_min_c = excluded.temperature_min_c, "
    "temperature_max_c = excluded.temperature_max_c, humidity_min_pct = excluded.humidity_min_pct, "
    "humidity_max_pct = excluded.humidity_max_pct, abc_class = excluded.abc_class, "
    "lifecycle = excluded.lifecycle, customer_tier = excluded.customer_tier, "
    "annual_usage_units = excluded.annual_usage_units, updated_at_us = excluded.updated_at_us"
)
_UPSERT_LOCATION = (
    f"INSERT INTO locations ({_LOCATION_COLUMNS}, updated_at_us) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (location_id) DO UPDATE SET name = excluded.name, level = excluded.level, "
    "parent_id = excluded.parent_id, location_type = excluded.location_type, "
    "customer_tier = excluded.customer_tier, updated_at_us = excluded.updated_at_us"
)
_UPSERT_TIER = (
    f"INSERT INTO customer_tiers ({_TIER_COLUMNS}, updated_at_us) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET weight = excluded.weight, description = excluded.description, "
    "updated_at_us = excluded.updated_at_us"
)


class MasterDataRepository:
    """SKUs, locations and customer tiers in `store`, and `snapshot()`, the cached whole."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = system_clock_us,
        snapshot_max_age_s: float = SNAPSHOT_MAX_AGE_S_DEFAULT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert snapshot_max_age_s >= 0
        self._store = store
        self._clock = clock
        self._snapshot_max_age_s = snapshot_max_age_s
        self._monotonic = monotonic
        self._cached: MasterData | None = None
        self._cached_at = 0.0
        # Bumped by every write: a read that started before a write must not be cached after it.
        self._generation = 0
        self._refresh_lock = asyncio.Lock()
        self._refresh_failing = False

    # ---- the snapshot --------------------------------------------------------------------

    async def snapshot(self) -> MasterData:
        """All master data as of at most `snapshot_max_age_s` ago, or of this repository's last write."""
        cached = self._fresh_cache()
        if cached is not None:
            return cached
        async with self._refresh_lock:  # one re-read serves every caller waiting for it
            cached = self._fresh_cache()
            if cached is not None:
                return cached
            generation = self._generation
            started = self._monotonic()
            try:
                async with self._store.read() as sql:
                    snapshot = await read_snapshot(sql)
            except StoreError as exc:
                if self._cached is None:
                    raise
                if not self._refresh_failing:
                    log.warning("master data re-read failed; serving the last snapshot", extra={"error": str(exc)})
                self._refresh_failing = True
                return self._cached
            if self._refresh_failing:
                log.info("master data re-read works again")
            self._refresh_failing = False
            if generation == self._generation:
                self._cached, self._cached_at = snapshot, started
            return snapshot

    def _fresh_cache(self) -> MasterData | None:
        if self._cached is None or self._monotonic() - self._cached_at > self._snapshot_max_age_s:
            return None
        return self._cached

    def invalidate(self) -> None:
        """Forget the cached snapshot: the next `snapshot()` reads the store."""
        self._generation += 1
        self._cached = None

    # ---- trusted writes (the interface the rules and reconciliation use) ------------------

    async def upsert_skus(self, skus: Sequence[Sku]) -> int:
        """Insert or replace SKUs by GTIN; return the rows written."""
        async with self._store.write() as sql:
            await _write_skus(sql, skus, self._clock())
        self.invalidate()
        return len(skus)

    async def upsert_tiers(self, tiers: Sequence[CustomerTier]) -> int:
        """Insert or replace customer tiers by name; return the rows written."""
        async with self._store.write() as sql:
            await _write_tiers(sql, tiers, self._clock())
        self.invalidate()
        return len(tiers)

    async def upsert_locations(self, locations: Sequence[Location]) -> int:
        """Insert or replace locations by id; raise MasterDataError (nothing stored) if one breaks the hierarchy."""
        latest = list({location.location_id: location for location in locations}.values())
        try:
            async with self._store.write() as sql:
                await _lock_locations(sql)
                rejections = check_locations(await _read_locations(sql), latest)
                if rejections:
                    first = rejections[0]
                    raise MasterDataError(f"location {latest[first.index].location_id!r}: {first.reason}")
                await _write_locations(sql, latest, self._clock())
        finally:
            self.invalidate()
        return len(latest)

    # ---- checked writes (rows from the API and files) -------------------------------------

    async def load_tiers(self, tiers: Sequence[CustomerTier]) -> list[RowRejection]:
        """Store the tiers that are not duplicates in the batch; return the others."""
        rejections = check_duplicates(tiers)
        refused = {row.index for row in rejections}
        async with self._store.write() as sql:
            await _write_tiers(sql, _kept(tiers, refused), self._clock())
        self.invalidate()
        return rejections

    async def load_locations(self, locations: Sequence[Location]) -> list[RowRejection]:
        """Store the locations that fit the hierarchy and name known tiers; return the others, by index."""
        rejections = check_duplicates(locations)
        try:
            async with self._store.write() as sql:
                await _lock_locations(sql)
                tiers = await _read_tiers(sql)
                rejections += check_tier_references(locations, tiers, skip=[row.index for row in rejections])
                existing = await _read_locations(sql)
                rejections += check_locations(existing, locations, skip=[row.index for row in rejections])
                refused = {row.index for row in rejections}
                await _write_locations(sql, _kept(locations, refused), self._clock())
        finally:
            self.invalidate()
        return sorted(rejections, key=lambda row: row.index)

    async def load_skus(self, skus: Sequence[Sku]) -> list[RowRejection]:
        """Store the SKUs that are not duplicates and name known tiers; return the others, by index."""
        rejections = check_duplicates(skus)
        async with self._store.write() as sql:
            tiers = await _read_tiers(sql)
            rejections += check_tier_references(skus, tiers, skip=[row.index for row in rejections])
            refused = {row.index for row in rejections}
            await _write_skus(sql, _kept(skus, refused), self._clock())
        self.invalidate()
        return sorted(rejections, key=lambda row: row.index)

    # ---- listing (straight from the store, not the cache: the API shows what is stored) ----

    async def list_skus(self, limit: int) -> list[Sku]:
        """SKUs by GTIN, at most `limit`."""
        async with self._store.read() as sql:
            rows = await sql.fetch_all(f"SELECT {_SKU_COLUMNS} FROM skus ORDER BY gtin LIMIT ?", (_limit(limit),))
        return _valid(rows, _sku_from_row, "skus")

    async def list_locations(self, limit: int) -> list[Location]:
        """Locations by id, at most `limit`."""
        async with self._store.read() as sql:
            rows = await sql.fetch_all(
                f"SELECT {_LOCATION_COLUMNS} FROM locations ORDER BY location_id LIMIT ?", (_limit(limit),)
            )
        return _valid(rows, _location_from_row, "locations")

    async def list_tiers(self, limit: int) -> list[CustomerTier]:
        """Customer tiers by name, at most `limit`."""
        async with self._store.read() as sql:
            rows = await sql.fetch_all(
                f"SELECT {_TIER_COLUMNS} FROM customer_tiers ORDER BY name LIMIT ?", (_limit(limit),)
            )
        return _valid(rows, _tier_from_row, "customer_tiers")


def _limit(limit: int) -> int:
    return max(0, min(limit, LIST_ROWS_MAX))


_Record = TypeVar("_Record", Sku, Location, CustomerTier)
Built = TypeVar("Built", Sku, Location, CustomerTier)


def _kept(records: Sequence[_Record], refused: set[int]) -> list[_Record]:
    return [record for index, record in enumerate(records) if index not in refused]


async def read_snapshot(sql: Sql) -> MasterData:
    """Every SKU, location and tier, read through `sql`."""
    skus = _valid(await sql.fetch_all(f"SELECT {_SKU_COLUMNS} FROM skus"), _sku_from_row, "skus")
    locations = await _read_locations(sql)
    tiers = await _read_tiers(sql)
    return MasterData({sku.gtin: sku for sku in skus}, locations, tiers)


async def _lock_locations(sql: Sql) -> None:
    # SQLite's write transaction already excludes every other writer; PostgreSQL's does not.
    if sql.dialect == "postgres":
        await sql.execute("LOCK TABLE locations IN SHARE ROW EXCLUSIVE MODE")


async def _read_locations(sql: Sql) -> dict[str, Location]:
    rows = await sql.fetch_all(f"SELECT {_LOCATION_COLUMNS} FROM locations")
    return {location.location_id: location for location in _valid(rows, _location_from_row, "locations")}


async def _read_tiers(sql: Sql) -> dict[str, CustomerTier]:
    rows = await sql.fetch_all(f"SELECT {_TIER_COLUMNS} FROM customer_tiers")
    return {tier.name: tier for tier in _valid(rows, _tier_from_row, "customer_tiers")}


async def _write_skus(sql: Sql, skus: Sequence[Sku], now_us: int) -> None:
    if skus:
        await sql.execute_many(_UPSERT_SKU, [(*_sku_row(sku), now_us) for sku in skus])


async def _write_locations(sql: Sql, locations: Sequence[Location], now_us: int) -> None:
    if locations:
        await sql.execute_many(
            _UPSERT_LOCATION,
            [
                (loc.location_id, loc.name, loc.level, loc.parent_id, loc.location_type, loc.customer_tier, now_us)
                for loc in locations
            ],
        )


async def _write_tiers(sql: Sql, tiers: Sequence[CustomerTier], now_us: int) -> None:
    if tiers:
        await sql.execute_many(_UPSERT_TIER, [(tier.name, tier.weight, tier.description, now_us) for tier in tiers])


def _sku_row(sku: Sku) -> tuple[object, ...]:
    condition = sku.condition
    bounds = (
        (None, None, None, None)
        if condition is None
        else (
            condition.temperature_min_c,
            condition.temperature_max_c,
            condition.humidity_min_pct,
            condition.humidity_max_pct,
        )
    )
    return (
        sku.gtin,
        sku.description,
        sku.unit_cost,
        sku.currency,
        *bounds,
        sku.abc_class,
        sku.lifecycle,
        sku.customer_tier,
        sku.annual_usage_units,
    )


def _sku_from_row(row: Sequence[Any]) -> Sku:
    bounds = row[4:8]
    return Sku(
        gtin=row[0],
        description=row[1],
        unit_cost=row[2],
        currency=row[3],
        condition=None if all(bound is None for bound in bounds) else ConditionRange(*bounds),
        abc_class=row[8],
        lifecycle=row[9],
        customer_tier=row[10],
        annual_usage_units=row[11],
    )


def _location_from_row(row: Sequence[Any]) -> Location:
    return Location(*row)


def _tier_from_row(row: Sequence[Any]) -> CustomerTier:
    return CustomerTier(*row)


def _valid(rows: Sequence[Sequence[Any]], build: Callable[[Sequence[Any]], Built], table: str) -> list[Built]:
    """The records the rows make; a row that no longer validates (edited by hand) is skipped and logged."""
    records = []
    for row in rows:
        try:
            records.append(build(row))
        except MasterDataError as exc:
            log.warning("invalid master data row skipped", extra={"table": table, "key": row[0], "reason": str(exc)})
    return records
