"""The uplink protocol over a real gRPC stream and a real store, for each store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from cloud_testkit import GATEWAY, OUTBOX, Uplink, cloud_config, make_event, make_events
from grpc import aio
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2, inventory_pb2_grpc

from cloud.config import StoreSection
from cloud.errors import StoreError
from cloud.server import CloudServer
from cloud.store import IngestTransaction, OnHandDelta, PositionRecord, Store
from cloud.store.factory import open_store


async def count_events(inventory: Any, **filters: Any) -> int:
    total, token = 0, ""
    while True:
        reply = await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_size=1000, page_token=token, **filters))
        total += len(reply.events)
        token = reply.next_page_token
        if not token:
            return total


async def gateway_state(inventory: Any, gateway_id: str = GATEWAY, outbox_id: str = OUTBOX) -> Any:
    reply = await inventory.ListGateways(inventory_pb2.ListGatewaysRequest())
    matches = [g for g in reply.gateways if (g.gateway_id, g.outbox_id) == (gateway_id, outbox_id)]
    assert len(matches) == 1, reply
    return matches[0]


async def expect_abort(up: Uplink, code: grpc.StatusCode) -> str:
    with pytest.raises(aio.AioRpcError) as raised:
        await up.call.read()
    assert raised.value.code() == code, raised.value
    return str(raised.value.details())


async def test_hello_gets_welcome_resuming_at_zero(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        welcome = await up.hello()
    assert welcome.resume_after_seq == 0
    assert welcome.max_batch_events == 2000
    assert welcome.max_unacked_batches == 8


async def test_batch_is_acked_with_high_water_seq(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        ack = await up.send(7, make_events(1, 5))
        await up.finish()
    assert (ack.batch_id, ack.committed_through_seq, ack.accepted, ack.duplicates) == (7, 5, 5, 0)
    assert list(ack.rejects) == []
    assert await count_events(inventory) == 5
    state = await gateway_state(inventory)
    assert (state.committed_through_seq, state.events_stored) == (5, 5)


async def test_replayed_batch_is_all_duplicates_and_changes_nothing(channel: aio.Channel, inventory: Any) -> None:
    events = make_events(1, 4)
    async with Uplink(channel) as up:
        await up.hello()
        first = await up.send(1, events)
        replay = await up.send(2, events)
    assert (first.accepted, first.duplicates) == (4, 0)
    assert (replay.accepted, replay.duplicates, replay.committed_through_seq) == (0, 4, 4)
    assert await count_events(inventory) == 4
    assert (await gateway_state(inventory)).events_stored == 4


async def test_reconnect_resumes_at_high_water_seq(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, make_events(1, 3))
        await up.finish()
    async with Uplink(channel) as up:
        welcome = await up.hello(oldest_seq=1)  # the edge has not yet deleted the acked rows
        ack = await up.send(2, make_events(4, 2))
    assert welcome.resume_after_seq == 3
    assert ack.committed_through_seq == 5


async def test_partly_replayed_batch_stores_only_the_new_events(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, make_events(1, 3))
        ack = await up.send(2, make_events(2, 4))  # seqs 2..5: 2 and 3 already stored
    assert (ack.accepted, ack.duplicates, ack.committed_through_seq) == (2, 2, 5)


async def test_gap_at_hello_is_recorded_and_listed(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, make_events(1, 3))
        await up.finish()
    async with Uplink(channel) as up:
        welcome = await up.hello(oldest_seq=10)  # seqs 4..9 are gone at the edge
        ack = await up.send(2, make_events(10, 1))
        await up.finish()
    assert welcome.resume_after_seq == 9
    assert ack.committed_through_seq == 10
    state = await gateway_state(inventory)
    assert [(g.first_seq, g.last_seq, g.reason) for g in state.gaps] == [(4, 9, "not in the edge outbox at hello")]
    assert state.gaps[0].recorded_at.seconds > 0


async def test_gap_between_batches_is_recorded_then_passed(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, make_events(1, 2))
        ack = await up.send(2, make_events(6, 2))
        await up.finish()
    assert ack.committed_through_seq == 7
    state = await gateway_state(inventory)
    assert [(g.first_seq, g.last_seq, g.reason) for g in state.gaps] == [(3, 5, "missing between batches")]


async def test_new_outbox_for_known_gateway_starts_at_zero(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, make_events(1, 3))
        await up.finish()
    async with Uplink(channel) as up:
        welcome = await up.hello(outbox_id="outbox-2")
        ack = await up.send(1, make_events(1, 1, event_id="urn:uuid:from-new-outbox"))
        await up.finish()
    assert welcome.resume_after_seq == 0
    assert ack.accepted == 1
    assert (await gateway_state(inventory, outbox_id="outbox-2")).committed_through_seq == 1
    assert (await gateway_state(inventory, outbox_id=OUTBOX)).committed_through_seq == 3


async def test_invalid_events_are_quarantined_and_the_seq_still_advances(channel: aio.Channel, inventory: Any) -> None:
    no_time = make_event(2)
    no_time.ClearField("event_time")
    bad_gtin = make_event(3)
    bad_gtin.objects[0].gtin = "09501101530004"
    async with Uplink(channel) as up:
        await up.hello()
        ack = await up.send(1, [make_event(1), no_time, bad_gtin, make_event(4)])
        replay = await up.send(2, [make_event(1), no_time, bad_gtin, make_event(4)])
    assert (ack.committed_through_seq, ack.accepted, ack.duplicates) == (4, 2, 0)
    assert [(r.seq, r.code) for r in ack.rejects] == [
        (2, ingest_pb2.REJECT_CODE_INVALID),
        (3, ingest_pb2.REJECT_CODE_INVALID),
    ]
    assert ack.rejects[0].reason == "event_time is not set"
    assert ack.rejects[1].reason == "objects[0].gtin '09501101530004': check digit should be 3"
    assert (replay.accepted, replay.duplicates, len(replay.rejects)) == (0, 2, 2)
    quarantine = await inventory.ListQuarantine(inventory_pb2.ListQuarantineRequest())
    assert sorted((e.seq, e.reason) for e in quarantine.entries) == [
        (2, "event_time is not set"),
        (3, "objects[0].gtin '09501101530004': check digit should be 3"),
    ]  # kept once although sent twice
    assert events_pb2.Event.FromString(quarantine.entries[0].payload).seq in (2, 3)


async def test_event_from_another_gateway_is_rejected_wrong_gateway(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        ack = await up.send(1, [make_event(1), make_event(2, gateway_id="gw-other")])
    assert ack.committed_through_seq == 2
    assert [(r.seq, r.code) for r in ack.rejects] == [(2, ingest_pb2.REJECT_CODE_WRONG_GATEWAY)]
    assert "differs from the stream's gateway" in ack.rejects[0].reason


@pytest.mark.parametrize(
    ("events", "needle"),
    [
        ([make_event(1), make_event(3)], "events[1].seq is 3, expected 2"),
        ([make_event(2), make_event(1)], "events[1].seq is 1, expected 3"),
        ([], "is empty"),
    ],
    ids=["hole", "descending", "empty"],
)
async def test_malformed_batch_aborts_the_stream(
    channel: aio.Channel, inventory: Any, events: list[events_pb2.Event], needle: str
) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.write_batch(1, events)
        details = await expect_abort(up, grpc.StatusCode.INVALID_ARGUMENT)
    assert needle in details
    assert (await gateway_state(inventory)).committed_through_seq == 0
    assert await count_events(inventory) == 0


async def test_batch_over_the_limit_aborts_the_stream(store_section: dict[str, Any]) -> None:
    async with (
        CloudServer(cloud_config(store_section, max_batch_events=3)) as server,
        aio.insecure_channel(server.target) as channel,
        Uplink(channel) as up,
    ):
        welcome = await up.hello()
        await up.write_batch(1, make_events(1, 4))
        details = await expect_abort(up, grpc.StatusCode.INVALID_ARGUMENT)
    assert welcome.max_batch_events == 3
    assert "has 4 events; the limit is 3" in details


@pytest.mark.parametrize(
    ("first", "needle"),
    [
        (ingest_pb2.GatewayMessage(batch=ingest_pb2.EventBatch(batch_id=1)), "first message must be a Hello"),
        (
            ingest_pb2.GatewayMessage(hello=ingest_pb2.Hello(gateway_id="bad id!", outbox_id="o")),
            "gateway_id",
        ),
        (ingest_pb2.GatewayMessage(hello=ingest_pb2.Hello(gateway_id="gw", outbox_id="")), "outbox_id"),
        (ingest_pb2.GatewayMessage(hello=ingest_pb2.Hello(gateway_id="gw", outbox_id="x" * 65)), "outbox_id"),
        (
            ingest_pb2.GatewayMessage(hello=ingest_pb2.Hello(gateway_id="gw", outbox_id="o", oldest_seq=2**64 - 1)),
            "oldest_seq",
        ),
    ],
    ids=["batch-first", "bad-gateway-id", "empty-outbox", "long-outbox", "huge-oldest-seq"],
)
async def test_bad_first_message_aborts_invalid_argument(
    channel: aio.Channel, first: ingest_pb2.GatewayMessage, needle: str
) -> None:
    async with Uplink(channel) as up:
        await up.call.write(first)
        details = await expect_abort(up, grpc.StatusCode.INVALID_ARGUMENT)
    assert needle in details


async def test_second_hello_on_a_stream_aborts(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.call.write(ingest_pb2.GatewayMessage(hello=ingest_pb2.Hello(gateway_id=GATEWAY, outbox_id="o")))
        details = await expect_abort(up, grpc.StatusCode.INVALID_ARGUMENT)
    assert "expected an EventBatch, got hello" in details


async def test_huge_seq_aborts_instead_of_overflowing_the_store(channel: aio.Channel) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.write_batch(1, [make_event(2**63, time_s=1_738_324_800)])
        details = await expect_abort(up, grpc.StatusCode.INVALID_ARGUMENT)
    assert "above the maximum" in details


async def test_newer_stream_supersedes_the_older_one(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as old, Uplink(channel) as new:
        await old.hello()
        await old.send(1, make_events(1, 2))
        welcome = await new.hello()
        details = await expect_abort(old, grpc.StatusCode.ABORTED)
        ack = await new.send(1, make_events(3, 1))
        await new.finish()
    assert details == "superseded by a newer stream"
    assert welcome.resume_after_seq == 2
    assert ack.committed_through_seq == 3


async def test_events_survive_a_server_restart_on_the_same_store(store_section: dict[str, Any]) -> None:
    config = cloud_config(store_section)
    async with (
        CloudServer(config) as server,
        aio.insecure_channel(server.target) as channel,
        Uplink(channel) as up,
    ):
        await up.hello()
        await up.send(1, make_events(1, 6))
        await up.finish()
    async with (
        CloudServer(config) as server,
        aio.insecure_channel(server.target) as channel,
        Uplink(channel) as up,
    ):
        welcome = await up.hello(oldest_seq=7)
        inventory: Any = inventory_pb2_grpc.InventoryServiceStub(channel)
        stored = await count_events(inventory)
    assert welcome.resume_after_seq == 6
    assert stored == 6


class _FailingStore:
    """The real store, except that on-hand updates fail like a full disk after `healthy_batches`."""

    def __init__(self, store: Store, healthy_batches: int) -> None:
        self._store = store
        self.healthy_batches = healthy_batches

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @asynccontextmanager
    async def ingest_transaction(self) -> AsyncIterator[IngestTransaction]:
        async with self._store.ingest_transaction() as tx:
            yield _FailingTransaction(tx, self)


class _FailingTransaction:
    def __init__(self, tx: IngestTransaction, owner: _FailingStore) -> None:
        self._tx = tx
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def load_positions(self, object_ids: Collection[str]) -> dict[str, PositionRecord]:
        return await self._tx.load_positions(object_ids)

    async def apply_on_hand(self, deltas: Sequence[OnHandDelta]) -> None:
        if self._owner.healthy_batches <= 0:
            raise StoreError("update on-hand: database or disk is full")
        self._owner.healthy_batches -= 1
        await self._tx.apply_on_hand(deltas)


async def test_store_failure_mid_batch_aborts_unavailable_and_commits_nothing(store_section: dict[str, Any]) -> None:
    config = cloud_config(store_section)
    store = await open_store(StoreSection.model_validate(store_section))
    failing = _FailingStore(store, healthy_batches=1)
    try:
        async with (
            CloudServer(config, store=failing) as server,
            aio.insecure_channel(server.target) as channel,
        ):
            inventory: Any = inventory_pb2_grpc.InventoryServiceStub(channel)
            async with Uplink(channel) as up:
                await up.hello()
                ack = await up.send(1, make_events(1, 3))
                await up.write_batch(2, make_events(4, 3))  # fails after inserting its events
                details = await expect_abort(up, grpc.StatusCode.UNAVAILABLE)
            assert ack.committed_through_seq == 3
            assert "disk is full" in details
            assert await count_events(inventory) == 3  # the failed batch's inserts rolled back
            assert (await gateway_state(inventory)).committed_through_seq == 3
            failing.healthy_batches = 1  # the disk has room again: the edge's retry goes through
            async with Uplink(channel) as up:
                welcome = await up.hello(oldest_seq=4)
                retry = await up.send(2, make_events(4, 3))
            assert welcome.resume_after_seq == 3
            assert (retry.accepted, retry.committed_through_seq) == (3, 6)
    finally:
        await store.close()


async def test_shutdown_ends_streams_with_unavailable(store_section: dict[str, Any]) -> None:
    server = CloudServer(cloud_config(store_section))
    await server.start()
    try:
        async with aio.insecure_channel(server.target) as channel, Uplink(channel) as up:
            await up.hello()
            stopping = asyncio.create_task(server.stop(grace_s=2.0))
            details = await expect_abort(up, grpc.StatusCode.UNAVAILABLE)
            await stopping
    finally:
        await server.stop()
    assert "shutting down" in details


async def test_message_over_the_byte_limit_is_refused(store_section: dict[str, Any]) -> None:
    config = cloud_config(store_section, max_message_bytes=65536)
    oversized = make_event(1)
    oversized.biz_location = "x" * 100_000
    async with (
        CloudServer(config) as server,
        aio.insecure_channel(server.target) as channel,
        Uplink(channel) as up,
    ):
        await up.hello()
        await up.write_batch(1, [oversized])
        await expect_abort(up, grpc.StatusCode.RESOURCE_EXHAUSTED)
        async with Uplink(channel) as retry:
            assert (await retry.hello()).resume_after_seq == 0


async def test_same_event_id_twice_in_one_batch_is_stored_once(channel: aio.Channel, inventory: Any) -> None:
    twin = make_event(1)
    twin.seq = 2  # the same event under another seq; with other content it would be a conflict
    async with Uplink(channel) as up:
        await up.hello()
        ack = await up.send(1, [make_event(1), twin])
    assert (ack.accepted, ack.duplicates, ack.committed_through_seq) == (1, 1, 2)
    assert await count_events(inventory) == 1


async def test_a_stream_without_hello_times_out(channel: aio.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cloud.ingest.service.HELLO_TIMEOUT_S", 0.2)
    async with Uplink(channel) as up:
        details = await expect_abort(up, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "no Hello within 0.2 s" in details
