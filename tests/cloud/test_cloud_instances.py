"""Several aggregators on one PostgreSQL database: exactly-once holds when they race on the same batch.

The load balancer may hand a gateway's retry to another instance while the first is still
committing the batch; here two `CloudServer`s on one schema get every batch at the same moment.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cloud_testkit import DOCK, GATEWAY, GTIN_B, OUTBOX, STORAGE, Uplink, cloud_config, item, make_event
from grpc import aio
from tallyport.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc

from cloud.config import StoreSection
from cloud.projections import counted_at, project
from cloud.server import CloudServer
from cloud.store.factory import open_store

ROUNDS = 20
NEW_OBJECTS_PER_ROUND = 20
RESTOCK_QUANTITY = 5.0


@pytest.fixture
def store_backend() -> str:
    return "postgres"


def round_events(round_number: int, first_seq: int) -> list[events_pb2.Event]:
    """New items received at the dock, the previous round's put away, and a class-level restock."""
    serials = range(round_number * NEW_OBJECTS_PER_ROUND, (round_number + 1) * NEW_OBJECTS_PER_ROUND)
    seqs = iter(range(first_seq, first_seq + 2 * NEW_OBJECTS_PER_ROUND + 1))
    events = [make_event(next(seqs), objects=[item(serial=str(serial))]) for serial in serials]
    if round_number > 0:
        events += [
            make_event(
                next(seqs),
                objects=[item(serial=str(serial - NEW_OBJECTS_PER_ROUND))],
                biz_location=STORAGE,
                biz_step=events_pb2.BIZ_STEP_STORING,
            )
            for serial in serials
        ]
    restock = events_pb2.QuantityElement(gtin=GTIN_B, quantity=RESTOCK_QUANTITY)
    events.append(make_event(next(seqs), action=events_pb2.ACTION_ADD, quantities=[restock]))
    return events


async def all_event_ids(inventory: Any) -> list[str]:
    ids: list[str] = []
    token = ""
    while True:
        reply = await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_size=1000, page_token=token))
        ids += [event.event_id for event in reply.events]
        token = reply.next_page_token
        if not token:
            return ids


async def test_the_same_batches_sent_to_two_instances_at_once_are_stored_once(store_section: dict[str, Any]) -> None:
    config = cloud_config(store_section)
    sent: list[events_pb2.Event] = []
    async with (
        CloudServer(config) as first,
        CloudServer(config) as second,
        aio.insecure_channel(first.target) as first_channel,
        aio.insecure_channel(second.target) as second_channel,
        Uplink(first_channel) as to_first,
        Uplink(second_channel) as to_second,
    ):
        welcomes = await asyncio.gather(to_first.hello(), to_second.hello())
        assert [welcome.resume_after_seq for welcome in welcomes] == [0, 0]
        for round_number in range(ROUNDS):
            events = round_events(round_number, len(sent) + 1)
            sent += events
            acks = await asyncio.gather(to_first.send(round_number, events), to_second.send(round_number, events))
            assert sum(ack.accepted for ack in acks) == len(events), acks  # one stored them...
            assert sum(ack.duplicates for ack in acks) == len(events), acks  # ...the other found duplicates
            assert [ack.committed_through_seq for ack in acks] == [len(sent), len(sent)]
        await asyncio.gather(to_first.finish(), to_second.finish())

        for channel in (first_channel, second_channel):
            inventory: Any = inventory_pb2_grpc.InventoryServiceStub(channel)
            stored_ids = await all_event_ids(inventory)
            assert sorted(stored_ids) == sorted(event.event_id for event in sent)  # each once, none missing
            on_hand = await inventory.ListOnHand(inventory_pb2.ListOnHandRequest())
            assert {
                (row.gtin, row.biz_location): (row.serialized_count, row.class_quantity) for row in on_hand.on_hand
            } == expected_on_hand(sent)
            [gateway] = (await inventory.ListGateways(inventory_pb2.ListGatewaysRequest())).gateways
            assert (gateway.committed_through_seq, gateway.events_stored) == (len(sent), len(sent))

    store = await open_store(StoreSection.model_validate(store_section))
    try:
        [record] = await store.list_gateways()
    finally:
        await store.close()
    state = record.state
    assert (state.gateway_id, state.outbox_id) == (GATEWAY, OUTBOX)
    assert (state.events_stored, state.duplicates, state.batches) == (len(sent), len(sent), 2 * ROUNDS)
    assert record.gaps == ()


def expected_on_hand(events: list[events_pb2.Event]) -> dict[tuple[str, str], tuple[int, float]]:
    """What one copy of `events` makes of on-hand, by the projection rules themselves."""
    changes = project(events, {})
    expected: dict[tuple[str, str], tuple[int, float]] = {}
    for position in changes.positions.values():
        place = counted_at(position)
        if place is not None:
            count, quantity = expected.get(place, (0, 0.0))
            expected[place] = (count + 1, quantity)
    for delta in changes.on_hand:
        if delta.class_quantity:
            count, quantity = expected.get((delta.gtin, delta.biz_location), (0, 0.0))
            expected[(delta.gtin, delta.biz_location)] = (count, quantity + delta.class_quantity)
    assert expected[(GTIN_B, DOCK)] == (0, RESTOCK_QUANTITY * ROUNDS)
    return expected
