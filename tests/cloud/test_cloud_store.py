"""The SQLite store: migrations, settings, error translation and transaction atomicity."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cloud.errors import SchemaVersionError, StoreError
from cloud.store import EventQuery, StoredEvent, StreamState
from cloud.store.schema import SCHEMA_VERSION
from cloud.store.sqlite_store import SqliteStore


def stored(event_id: str, seq: int = 1) -> StoredEvent:
    return StoredEvent(event_id, "gw", "ob", seq, 1_000_000 * seq, "loc", 24, 0, b"payload")


def read_pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as connection:
        value: object = connection.execute(f"PRAGMA {name}").fetchone()[0]
    connection.close()
    return value


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


async def test_an_exception_rolls_the_whole_transaction_back(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cloud.db")
    try:
        with pytest.raises(RuntimeError):
            async with store.ingest_transaction() as tx:
                await tx.insert_events([stored("e1"), stored("e2", 2)])
                await tx.save_stream_state(StreamState("gw", "ob", 2, "v", 1, 1))
                raise RuntimeError("crash between the insert and the commit")
        assert await store.list_events(EventQuery(limit=10)) == []
        assert await store.list_gateways() == []
    finally:
        await store.close()


async def test_a_cancelled_transaction_rolls_back_and_frees_the_writer(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cloud.db")
    inserted = asyncio.Event()

    async def stuck_batch() -> None:
        async with store.ingest_transaction() as tx:
            await tx.insert_events([stored("e1")])
            inserted.set()
            await asyncio.sleep(3600)  # the stream is cut here

    try:
        task = asyncio.create_task(stuck_batch())
        await inserted.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with store.ingest_transaction() as tx:  # the write lock and the connection are free again
            assert await tx.insert_events([stored("e2", 2)]) == {"e2"}
        assert [row.event_id for row in await store.list_events(EventQuery(limit=10))] == ["e2"]
    finally:
        await store.close()


async def test_duplicates_inside_one_insert_are_inserted_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cloud.db")
    try:
        async with store.ingest_transaction() as tx:
            assert await tx.insert_events([stored("e1"), stored("e1", 2)]) == {"e1"}
            assert await tx.insert_events([stored("e1", 3)]) == set()
    finally:
        await store.close()


async def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cloud.db")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.list_gateways()
    with pytest.raises(StoreError, match="closed"):
        async with store.ingest_transaction():
            pass


async def test_a_transaction_over_its_time_bound_is_a_store_error(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cloud.db", operation_timeout_ms=100)
    try:
        with pytest.raises(StoreError, match=r"took longer than 0\.1 s"):
            async with store.ingest_transaction() as tx:
                await tx.insert_events([stored("e1")])
                await asyncio.sleep(1)
        assert await store.list_events(EventQuery(limit=10)) == []
    finally:
        await store.close()
