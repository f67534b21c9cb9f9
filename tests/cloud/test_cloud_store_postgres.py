"""The PostgreSQL store on its own: migrations under a lock, schemas, locks between instances, bounds, errors.

Each "instance" here is a `PostgresStore` with a pool of its own, as each aggregator process has.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from cloud_testkit import BASE_TIME_S, DOCK, STORAGE, admin_execute, item, make_event
from psycopg import sql
from tallyport.v1 import events_pb2, ingest_pb2

from cloud.errors import SchemaVersionError, StoreError
from cloud.ingest.commit import check_events, commit_batch, open_stream
from cloud.projections import counted_at, project
from cloud.store import EventQuery, StoredEvent, StreamState
from cloud.store.postgres_schema import MIGRATIONS, SCHEMA_VERSION
from cloud.store.postgres_store import PostgresStore

Opener = Callable[..., Any]
YARD = "urn:tallyport:loc:dc1:yard"
GATE = "urn:tallyport:loc:dc1:gate-2"


def stored(event_id: str, seq: int = 1) -> StoredEvent:
    return StoredEvent(event_id, "gw", "ob", seq, 1_000_000 * seq, "loc", 24, 0, b"payload")


@pytest.fixture
async def instances(postgres_dsn: str, postgres_schema: str) -> AsyncIterator[Opener]:
    """`await instances(**settings)`: a PostgresStore on the test schema, closed after the test."""
    opened: list[PostgresStore] = []

    async def opener(dsn: str = postgres_dsn, schema: str = postgres_schema, **settings: Any) -> PostgresStore:
        store = await PostgresStore.open(dsn, schema, **settings)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


def migrations(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    return admin_execute(
        dsn,
        sql.SQL("SELECT version, description, applied_at FROM {}.schema_migrations ORDER BY version").format(
            sql.Identifier(schema)
        ),
    )


# ---- migrations and schemas ------------------------------------------------------------------


async def test_migrations_are_recorded_once(postgres_dsn: str, postgres_schema: str, instances: Opener) -> None:
    await (await instances()).close()
    first = migrations(postgres_dsn, postgres_schema)
    await instances()  # reopening finds the schema current and applies nothing
    assert migrations(postgres_dsn, postgres_schema) == first
    assert [(version, description) for version, description, _ in first] == [
        (index + 1, description) for index, (description, _) in enumerate(MIGRATIONS)
    ]


async def test_instances_starting_together_create_and_migrate_the_schema_once(
    postgres_dsn: str, fresh_schema_name: str, instances: Opener
) -> None:
    stores = await asyncio.gather(*(instances(schema=fresh_schema_name) for _ in range(4)))
    async with stores[0].ingest_transaction() as tx:
        await tx.insert_events([stored("e1")])
    assert [len(await store.list_events(EventQuery(limit=10))) for store in stores] == [1, 1, 1, 1]
    assert [row[0] for row in migrations(postgres_dsn, fresh_schema_name)] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused(postgres_dsn: str, postgres_schema: str, instances: Opener) -> None:
    await (await instances()).close()
    admin_execute(
        postgres_dsn,
        sql.SQL("INSERT INTO {}.schema_migrations (version, description) VALUES (%s, 'from the future')").format(
            sql.Identifier(postgres_schema)
        ),
        (SCHEMA_VERSION + 1,),
    )
    with pytest.raises(SchemaVersionError, match="newer than this program"):
        await instances()


async def test_each_schema_sees_only_its_own_data(fresh_schema_name: str, instances: Opener) -> None:
    one, other = await instances(), await instances(schema=fresh_schema_name)
    async with one.ingest_transaction() as tx:
        await tx.insert_events([stored("e1")])
    async with other.ingest_transaction() as tx:
        assert await tx.insert_events([stored("e1")]) == {"e1"}  # not a duplicate of the other schema's
    assert len(await one.list_events(EventQuery(limit=10))) == 1


async def test_an_unreachable_database_is_a_store_error_that_hides_the_password(unused_tcp_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        await PostgresStore.open(f"postgresql://tallyport:hunter2@127.0.0.1:{unused_tcp_port}/nowhere", "x")
    message = str(raised.value)
    assert message.startswith(f"postgresql://tallyport@127.0.0.1:{unused_tcp_port}/nowhere: cannot connect")
    assert "Connection refused" in message and "\n" not in message
    assert "hunter2" not in message
    assert time.monotonic() - started < 5


async def test_a_bad_schema_name_is_refused(postgres_dsn: str) -> None:
    with pytest.raises(StoreError, match="schema 'Robert; DROP' must match"):
        await PostgresStore.open(postgres_dsn, "Robert; DROP")


# ---- locks between instances -----------------------------------------------------------------


async def test_a_stream_locked_by_another_instance_is_waited_for_then_read_as_committed(instances: Opener) -> None:
    first, second = await instances(), await instances()
    for existing in (False, True):  # the row does not exist yet (advisory lock), then it does (row lock)
        holding, release = asyncio.Event(), asyncio.Event()
        seq = 7 if existing else 5

        async def hold(seq: int = seq, holding: asyncio.Event = holding, release: asyncio.Event = release) -> None:
            async with first.ingest_transaction() as tx:
                state = await tx.stream_state("gw", "ob")
                await tx.save_stream_state(StreamState("gw", "ob", seq, "v", 1, 1, batches=1 + (state is not None)))
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        async with second.ingest_transaction() as tx:
            reading = asyncio.create_task(tx.stream_state("gw", "ob"))
            await asyncio.sleep(0.2)
            assert not reading.done()  # waiting for the first instance's transaction
            release.set()
            await holder
            state = await reading
        assert state is not None and state.committed_through_seq == seq


async def test_waiting_for_a_stuck_instance_gives_up_within_the_bound(instances: Opener) -> None:
    stuck, waiting = await instances(), await instances(operation_timeout_ms=300)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with stuck.ingest_transaction() as tx:
            await tx.stream_state("gw", "ob")  # none yet: it holds the stream's advisory lock
            await tx.save_stream_state(StreamState("gw", "ob", 1, "v", 1, 1))
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match=r"took longer than 0\.3 s|statement timeout"):
            async with waiting.ingest_transaction() as tx:
                await tx.stream_state("gw", "ob")
        assert time.monotonic() - started < 2
    finally:
        release.set()
        await holder
    async with waiting.ingest_transaction() as tx:  # its connection was cleaned up and works again
        state = await tx.stream_state("gw", "ob")
    assert state is not None and state.committed_through_seq == 1


async def test_streams_moving_the_same_objects_at_once_keep_on_hand_exact(instances: Opener) -> None:
    # Two gateways, each on its own instance, report the same objects in the same instant: new
    # ones (no position row to lock yet) in even rounds, the previous round's (existing rows) in
    # odd rounds. Each object must end where its newest event put it, counted exactly once.
    east, west = await instances(), await instances()
    now_us = 1_000
    for gateway_id, store in (("gw-east", east), ("gw-west", west)):
        await open_stream(store, ingest_pb2.Hello(gateway_id=gateway_id, outbox_id="ob", agent_version="t"), now_us)
    every_event: list[events_pb2.Event] = []
    per_round, rounds = 20, 8
    seq = 0
    previous: list[events_pb2.IdentifiedObject] = []
    for round_number in range(rounds):
        fresh = [item(serial=str(10_000 + round_number * per_round + index)) for index in range(per_round)]
        objects = previous if round_number % 2 else fresh
        batches: dict[str, list[events_pb2.Event]] = {"gw-east": [], "gw-west": []}
        for index, thing in enumerate(objects):
            seq += 1
            east_newer = (index + round_number) % 2 == 0
            # Odd rounds move every object away from where it is, to two other places.
            east_place, west_place = (YARD, GATE) if round_number % 2 else (DOCK, STORAGE)
            for gateway_id, location, offset in (
                ("gw-east", east_place, 0),
                ("gw-west", west_place, -1 if east_newer else 1),
            ):
                batches[gateway_id].append(
                    make_event(
                        seq,
                        gateway_id=gateway_id,
                        objects=[thing],
                        biz_location=location,
                        time_s=BASE_TIME_S + seq * 10 + offset,
                    )
                )
        every_event += batches["gw-east"] + batches["gw-west"]
        await asyncio.gather(
            *(
                commit_batch(
                    store, gateway_id, "ob", round_number, check_events(_batch(batches[gateway_id]), gateway_id), now_us
                )
                for gateway_id, store in (("gw-east", east), ("gw-west", west))
            )
        )
        previous = objects
    final = project(every_event, {}).positions  # the newest event wins, in whatever order they come
    expected: dict[tuple[str, str], int] = {}
    for position in final.values():
        place = counted_at(position)
        if place is not None:
            expected[place] = expected.get(place, 0) + 1
    assert sum(expected.values()) == per_round * rounds // 2
    assert {(row.gtin, row.biz_location): row.serialized_count for row in await east.list_on_hand()} == expected
    for object_id, position in final.items():
        found = await west.get_position(object_id)
        assert found is not None and (found.biz_location, found.gateway_id) == (
            position.biz_location,
            position.gateway_id,
        )


def _batch(events: Sequence[events_pb2.Event]) -> ingest_pb2.EventBatch:
    return ingest_pb2.EventBatch(batch_id=1, events=list(events))


# ---- bounds and failures ---------------------------------------------------------------------


async def test_no_free_connection_is_a_store_error_within_the_acquire_bound(instances: Opener) -> None:
    store = await instances(pool_connections_max=1, pool_acquire_timeout_ms=200)
    release = asyncio.Event()
    holding = asyncio.Event()

    async def hold() -> None:
        async with store.ingest_transaction():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match="no database connection"):
            await store.list_gateways()
        assert time.monotonic() - started < 2
    finally:
        release.set()
        await holder
    assert await store.list_gateways() == []


async def test_a_connection_killed_mid_transaction_rolls_back_and_the_pool_recovers(
    postgres_dsn: str, instances: Opener
) -> None:
    name = f"kill_me_{uuid.uuid4().hex[:8]}"
    store = await instances(dsn=f"{postgres_dsn}?application_name={name}", pool_connections_max=1)
    with pytest.raises(StoreError):
        async with store.ingest_transaction() as tx:
            await tx.insert_events([stored("e1")])
            killed = admin_execute(
                postgres_dsn,
                sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"),
                (name,),
            )
            assert killed == [(True,)]
            await tx.insert_events([stored("e2", 2)])
    async with store.ingest_transaction() as tx:  # the dead connection was replaced
        assert await tx.insert_events([stored("e3", 3)]) == {"e3"}
    assert [row.event_id for row in await store.list_events(EventQuery(limit=10))] == ["e3"]


async def test_database_errors_become_store_errors(postgres_dsn: str, postgres_schema: str, instances: Opener) -> None:
    store = await instances()
    admin_execute(postgres_dsn, sql.SQL("DROP TABLE {}.on_hand").format(sql.Identifier(postgres_schema)))
    with pytest.raises(StoreError, match=r'list on-hand: relation "on_hand" does not exist \(SQLSTATE 42P01\)'):
        await store.list_on_hand()
