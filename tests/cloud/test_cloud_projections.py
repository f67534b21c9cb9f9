"""Positions and on-hand: the pure rules, then the same rules through real ingest and queries."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from cloud_testkit import BASE_TIME_S, DOCK, GTIN_A, GTIN_B, STORAGE, Uplink, item, make_event, sscc
from grpc import aio
from tallyport.v1 import events_pb2, inventory_pb2

from cloud.projections import counted_at, project
from cloud.store import OnHandDelta

ITEM = item(GTIN_A, "1001")


async def on_hand(inventory: Any, **filters: str) -> dict[tuple[str, str], tuple[float, int, float]]:
    reply = await inventory.ListOnHand(inventory_pb2.ListOnHandRequest(**filters))
    return {
        (row.gtin, row.biz_location): (row.quantity, row.serialized_count, row.class_quantity) for row in reply.on_hand
    }


async def position(inventory: Any, key: str = ITEM.id) -> Any:
    return await inventory.GetPosition(inventory_pb2.GetPositionRequest(id=key))


# ---- the pure rules --------------------------------------------------------------------------


def test_receiving_creates_a_counted_position() -> None:
    changes = project([make_event(1, objects=[ITEM])], {})
    after = changes.positions[ITEM.id]
    assert (after.biz_location, after.gtin, after.present, after.in_transit) == (DOCK, GTIN_A, True, False)
    assert counted_at(after) == (GTIN_A, DOCK)
    assert changes.on_hand == [OnHandDelta(GTIN_A, DOCK, 1, 0.0)]


def test_a_move_decrements_the_old_place_and_increments_the_new() -> None:
    first = project([make_event(1, objects=[ITEM])], {}).positions
    changes = project(
        [make_event(2, objects=[ITEM], biz_location=STORAGE, biz_step=events_pb2.BIZ_STEP_STORING)], first
    )
    assert sorted(changes.on_hand, key=lambda d: d.biz_location) == [
        OnHandDelta(GTIN_A, STORAGE, 1, 0.0),
        OnHandDelta(GTIN_A, DOCK, -1, 0.0),
    ]


def test_a_late_event_changes_nothing() -> None:
    now = project([make_event(2, objects=[ITEM], time_s=BASE_TIME_S + 100)], {}).positions
    changes = project([make_event(1, objects=[ITEM], biz_location=STORAGE, time_s=BASE_TIME_S)], now)
    assert changes.positions == {}
    assert changes.on_hand == []


def test_identity_fields_persist_when_a_later_event_omits_them() -> None:
    first = project([make_event(1, objects=[ITEM])], {}).positions
    bare = events_pb2.IdentifiedObject(id=ITEM.id)
    after = project([make_event(2, objects=[bare])], first).positions[ITEM.id]
    assert (after.gtin, after.epc_uri, after.epc_hex) == (ITEM.gtin, ITEM.epc_uri, ITEM.epc_hex)


def test_aggregation_delete_unpacks_without_removing() -> None:
    pallet = events_pb2.IdentifiedObject(id="pallet-1", sscc=sscc("10614141000000123"))
    unpack = make_event(
        1,
        event_type=events_pb2.EVENT_TYPE_AGGREGATION,
        action=events_pb2.ACTION_DELETE,
        parent=pallet,
        objects=[ITEM],
    )
    changes = project([unpack], {})
    assert changes.positions["pallet-1"].present and changes.positions[ITEM.id].present


# ---- through ingest and the query API --------------------------------------------------------


async def test_receiving_moves_the_position_and_counts_on_hand(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, objects=[ITEM])])
    found = await position(inventory)
    assert (found.biz_location, found.gtin, found.in_transit) == (DOCK, GTIN_A, False)
    assert found.biz_step == events_pb2.BIZ_STEP_RECEIVING
    assert await on_hand(inventory) == {(GTIN_A, DOCK): (1.0, 1, 0.0)}


async def test_departing_sets_in_transit_and_drops_on_hand(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, objects=[ITEM])])
        await up.send(2, [make_event(2, objects=[ITEM], biz_step=events_pb2.BIZ_STEP_DEPARTING)])
    found = await position(inventory)
    assert found.in_transit
    assert found.biz_step == events_pb2.BIZ_STEP_DEPARTING
    assert await on_hand(inventory) == {}  # zero rows are not listed


async def test_in_transit_disposition_alone_drops_on_hand(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, objects=[ITEM])])
        await up.send(
            2,
            [
                make_event(
                    2,
                    objects=[ITEM],
                    biz_step=events_pb2.BIZ_STEP_LOADING,
                    disposition=events_pb2.DISPOSITION_IN_TRANSIT,
                )
            ],
        )
    assert (await position(inventory)).in_transit
    assert await on_hand(inventory) == {}


async def test_a_late_event_does_not_move_the_item_back(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, objects=[ITEM], biz_location=STORAGE, time_s=BASE_TIME_S + 600)])
        # Seq 2 was read earlier at the dock but arrives later (edge clock / buffering).
        ack = await up.send(2, [make_event(2, objects=[ITEM], biz_location=DOCK, time_s=BASE_TIME_S)])
    assert ack.accepted == 1  # stored as history...
    assert (await position(inventory)).biz_location == STORAGE  # ...but the item stays where it is
    assert await on_hand(inventory) == {(GTIN_A, STORAGE): (1.0, 1, 0.0)}


async def test_a_duplicate_changes_no_projection(channel: aio.Channel, inventory: Any) -> None:
    receive = make_event(1, objects=[ITEM])
    move = make_event(2, objects=[ITEM], biz_location=STORAGE)
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [receive, move])
        await up.send(2, [receive, move])
    assert await on_hand(inventory) == {(GTIN_A, STORAGE): (1.0, 1, 0.0)}


async def test_object_delete_removes_from_on_hand_and_keeps_the_row(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, objects=[ITEM])])
        await up.send(
            2,
            [
                make_event(
                    2,
                    objects=[ITEM],
                    action=events_pb2.ACTION_DELETE,
                    biz_step=events_pb2.BIZ_STEP_DESTROYING,
                )
            ],
        )
    found = await position(inventory)
    assert found.biz_step == events_pb2.BIZ_STEP_DESTROYING
    assert found.biz_location == ""  # not at any location any more
    assert await on_hand(inventory) == {}


async def test_class_quantities_add_delete_and_observe(channel: aio.Channel, inventory: Any) -> None:
    def quantity(seq: int, action: int, amount: float, uom: str = "", gtin: str = GTIN_B) -> events_pb2.Event:
        element = events_pb2.QuantityElement(gtin=gtin, quantity=amount, uom=uom)
        return make_event(seq, action=action, quantities=[element])

    async with Uplink(channel) as up:
        await up.hello()
        await up.send(
            1,
            [
                quantity(1, events_pb2.ACTION_ADD, 12),
                quantity(2, events_pb2.ACTION_ADD, 5),
                quantity(3, events_pb2.ACTION_DELETE, 4),
                quantity(4, events_pb2.ACTION_OBSERVE, 100),  # a count seen, not a change
                quantity(5, events_pb2.ACTION_ADD, 250.5, uom="KGM"),  # a measure, never a count
            ],
        )
        await up.send(2, [make_event(6, objects=[item(GTIN_B, "7")])])  # one tagged item as well
    assert await on_hand(inventory) == {(GTIN_B, DOCK): (14.0, 1, 13.0)}
    assert await on_hand(inventory, gtin=GTIN_A) == {}
    assert await on_hand(inventory, biz_location=DOCK, gtin=GTIN_B) == {(GTIN_B, DOCK): (14.0, 1, 13.0)}


async def test_position_lookup_by_epc_uri_and_epc_hex(channel: aio.Channel, inventory: Any) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(1, [make_event(1, objects=[ITEM])])
    assert (await position(inventory, ITEM.epc_uri)).id == ITEM.id
    assert (await position(inventory, ITEM.epc_hex)).id == ITEM.id
    assert (await position(inventory, ITEM.epc_hex.lower())).id == ITEM.id


async def test_unknown_object_is_not_found(inventory: Any) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await position(inventory, "urn:epc:id:sgtin:0000000.000000.0")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no position for" in str(raised.value.details())
    with pytest.raises(aio.AioRpcError) as raised:
        await position(inventory, "")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
