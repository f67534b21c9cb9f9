"""Both stores: transaction atomicity, bounds and closing; then SQLite's migrations, settings and errors.

PostgreSQL's own (migrations, locks, pool, errors) are in test_cloud_store_postgres.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from cloud_testkit import StoreOpener

from cloud.errors import SchemaVersionError, StoreError
from cloud.store import (
    EventObjectKey,
    EventQuery,
    OnHandDelta,
    OnHandRecord,
    PositionRecord,
    QuarantineRecord,
    StoredEvent,
    StreamState,
)
from cloud.store.schema import SCHEMA_VERSION
from cloud.store.sqlite_store import SqliteStore


def stored(event_id: str, seq: int = 1, mentions: tuple[EventObjectKey, ...] = ()) -> StoredEvent:
    return StoredEvent(event_id, "gw", "ob", seq, 1_000_000 * seq, "loc", 24, 0, b"payload", mentions)


def read_pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as connection:
        value: object = connection.execute(f"PRAGMA {name}").fetchone()[0]
    connection.close()
    return value


# ---- both stores -----------------------------------------------------------------------------


async def test_an_exception_rolls_the_whole_transaction_back(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    with pytest.raises(RuntimeError):
        async with store.ingest_transaction() as tx:
            await tx.insert_events([stored("e1"), stored("e2", 2)])
            await tx.save_stream_state(StreamState("gw", "ob", 2, "v", 1, 1))
            raise RuntimeError("crash between the insert and the commit")
    assert await store.list_events(EventQuery(limit=10)) == []
    assert await store.list_gateways() == []


async def test_a_cancelled_transaction_rolls_back_and_frees_the_writer(open_test_store: StoreOpener) -> None:
    store = await open_test_store(pool_connections_max=1)
    inserted = asyncio.Event()

    async def stuck_batch() -> None:
        async with store.ingest_transaction() as tx:
            await tx.insert_events([stored("e1")])
            inserted.set()
            await asyncio.sleep(3600)  # the stream is cut here

    task = asyncio.create_task(stuck_batch())
    await inserted.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store.ingest_transaction() as tx:  # the write lock (or the only connection) is free again
        assert await tx.insert_events([stored("e2", 2)]) == {"e2"}
    assert [row.event_id for row in await store.list_events(EventQuery(limit=10))] == ["e2"]


async def test_duplicates_inside_one_insert_are_inserted_once(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    async with store.ingest_transaction() as tx:
        assert await tx.insert_events([stored("e1"), stored("e1", 2)]) == {"e1"}
        assert await tx.insert_events([stored("e1", 3)]) == set()
    assert [(row.event_id, row.seq) for row in await store.list_events(EventQuery(limit=10))] == [("e1", 1)]


async def test_a_closed_store_raises_store_error(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.list_gateways()
    with pytest.raises(StoreError, match="closed"):
        async with store.ingest_transaction():
            pass


async def test_a_transaction_over_its_time_bound_is_a_store_error(open_test_store: StoreOpener) -> None:
    store = await open_test_store(operation_timeout_ms=100)
    with pytest.raises(StoreError, match=r"took longer than 0\.1 s"):
        async with store.ingest_transaction() as tx:
            await tx.insert_events([stored("e1")])
            await asyncio.sleep(1)
    assert await store.list_events(EventQuery(limit=10)) == []


async def test_every_primitive_round_trips(open_test_store: StoreOpener) -> None:
    store = await open_test_store()
    position = PositionRecord("obj-1", "urn:epc:1", "30AB", "g1", "", "loc", "rp", 24, 0, False, True, 5, "e1", "gw", 1)
    async with store.ingest_transaction() as tx:
        assert await tx.stream_state("gw", "ob") is None
        await tx.insert_events([stored("e1", mentions=(EventObjectKey("obj-1", "g1"),)), stored("e2", 2)])
        assert await tx.quarantine([QuarantineRecord("gw", "ob", 3, "e3", "bad", 7, b"raw")]) == 1
        assert await tx.quarantine([QuarantineRecord("gw", "ob", 3, "e3", "bad", 8, b"raw")]) == 0
        assert await tx.load_positions({"obj-1", "obj-2"}) == {}
        await tx.save_positions([position])
        await tx.apply_on_hand([OnHandDelta("g1", "loc", 1, 0.0), OnHandDelta("g2", "loc", 0, 2.5)])
        await tx.apply_on_hand([OnHandDelta("g2", "loc", 0, -2.5)])
        await tx.save_stream_state(StreamState("gw", "ob", 3, "v", 1, 2, events_stored=2, rejects=1, batches=1))
    async with store.ingest_transaction() as tx:
        assert await tx.load_positions({"obj-1", "obj-2"}) == {"obj-1": position}
        assert await tx.stream_state("gw", "ob") == StreamState("gw", "ob", 3, "v", 1, 2, 2, 0, 1, 1)
        assert await tx.outbox_ids("gw") == ["ob"]
    assert await store.get_position("obj-1") == position
    assert await store.get_position("urn:epc:1") == position
    assert await store.get_position("30ab") == position
    assert await store.get_position("obj-2") is None  # looked at, never saved: nothing left behind
    assert await store.list_on_hand() == [OnHandRecord("g1", "loc", 1, 0.0)]  # g2 is back at zero
    assert [row.event_id for row in await store.list_events(EventQuery(limit=10, gtin="g1"))] == ["e1"]
    assert [row.event_id for row in await store.list_events(EventQuery(limit=10, before=(2_000_000, "e2")))] == ["e1"]
    [quarantined] = await store.list_quarantine(10)
    assert (quarantined.seq, quarantined.received_at_us, quarantined.payload) == (3, 7, b"raw")


async def test_text_with_nul_characters_is_stored_and_found(open_test_store: StoreOpener) -> None:
    # protobuf strings may hold U+0000 and validation lets it through; PostgreSQL text cannot hold it.
    store = await open_test_store()
    odd = "loc\x00odd"
    async with store.ingest_transaction() as tx:
        event = StoredEvent("e\x001", "gw", "ob\x00", 1, 1_000_000, odd, 24, 0, b"payload\x00")
        assert await tx.insert_events([event]) == {"e\x001"}
        assert await tx.insert_events([event]) == set()
        assert await tx.load_positions({"o\x00"}) == {}
        await tx.save_positions(
            [PositionRecord("o\x00", "", "", "g", "", odd, "", 24, 0, False, True, 1, "e", "gw", 1)]
        )
        await tx.apply_on_hand([OnHandDelta("g", odd, 1)])
        await tx.save_stream_state(StreamState("gw", "ob\x00", 1, "v", 1, 1))
    async with store.ingest_transaction() as tx:
        assert list(await tx.load_positions({"o\x00"})) == ["o\x00"]
        assert await tx.stream_state("gw", "ob\x00") is not None
    [listed] = await store.list_events(EventQuery(limit=10, biz_location=odd))
    assert listed.payload == b"payload\x00"  # the payload is bytes: always exact
    assert await store.get_position("o\x00") is not None
    assert [row.serialized_count for row in await store.list_on_hand(biz_location=odd)] == [1]


# ---- SQLite ----------------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["full", "normal"])
async def test_a_new_file_is_migrated_in_wal_mode(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "sub" / "cloud.db"
    store = await SqliteStore.open(path, durability)  # type: ignore[arg-type]
    try:
        assert store.durability == durability
    finally:
        await store.close()
    assert read_pragma(path, "user_version") == SCHEMA_VERSION
    assert read_pragma(path, "journal_mode") == "wal"


async def test_reopening_keeps_the_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    store = await SqliteStore.open(path)
    async with store.ingest_transaction() as tx:
        assert await tx.insert_events([stored("e1")]) == {"e1"}
    await store.close()
    store = await SqliteStore.open(path)
    try:
        assert [row.event_id for row in await store.list_events(EventQuery(limit=10))] == ["e1"]
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(SchemaVersionError, match="newer than this program"):
        await SqliteStore.open(path)


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        await SqliteStore.open(path)
