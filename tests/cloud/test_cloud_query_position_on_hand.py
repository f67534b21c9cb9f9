"""GetPosition's where-now fields and ListOnHand's paging, through real ingest and the real gRPC API.

Run once per store (SQLite and PostgreSQL). The large tables (more rows than one default page)
are written straight into `on_hand` with plain SQL on a second connection to the same store:
ingesting 50,001 rows one quantity at a time would test ingest, not paging.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from cloud_testkit import DOCK, GTIN_A, STORAGE, StoreOpener, Uplink, gtin, item, make_event
from grpc import aio
from tallyport.v1 import events_pb2, inventory_pb2

from cloud.query.paging import ON_HAND_PAGE_SIZE_MAX, encode_event_token, encode_on_hand_token

ITEM = item(GTIN_A, "2001")
GTINS = [gtin(f"0950110153{n:03d}") for n in (10, 11, 12)]
LOCATIONS = [f"urn:tallyport:loc:dc1:aisle-{n}" for n in (1, 2, 3, 4)]


async def position(inventory: Any) -> inventory_pb2.Position:
    found: inventory_pb2.Position = await inventory.GetPosition(inventory_pb2.GetPositionRequest(id=ITEM.id))
    return found


def where(found: inventory_pb2.Position) -> tuple[bool, bool, str, str]:
    return found.present, found.in_transit, found.last_seen_biz_location, found.biz_location


async def send(channel: aio.Channel, *events: events_pb2.Event) -> None:
    async with Uplink(channel) as up:
        await up.hello()
        for event in events:
            await up.send(event.seq, [event])
        await up.finish()


def quantities_at(seq: int, location: str, gtins: list[str], amount: float = 1.0) -> events_pb2.Event:
    """Class-level stock of each of `gtins` added at `location`: one on-hand row each."""
    elements = [events_pb2.QuantityElement(gtin=code, quantity=amount) for code in gtins]
    return make_event(seq, action=events_pb2.ACTION_ADD, biz_location=location, quantities=elements)


async def list_pages(inventory: Any, page_size: int, **filters: str) -> list[list[tuple[str, str]]]:
    """Every page of (gtin, biz_location) keys, following next_page_token."""
    pages: list[list[tuple[str, str]]] = []
    token = ""
    while True:
        reply = await inventory.ListOnHand(
            inventory_pb2.ListOnHandRequest(page_size=page_size, page_token=token, **filters)
        )
        pages.append([(row.gtin, row.biz_location) for row in reply.on_hand])
        token = reply.next_page_token
        if not token:
            return pages


async def fill_on_hand(open_test_store: StoreOpener, rows: int) -> list[tuple[str, str]]:
    """`rows` on-hand rows of one GTIN, written directly; their keys in the order the API must list them."""
    store = await open_test_store()
    keys = [(GTIN_A, f"loc-{n:06d}") for n in range(rows)]
    async with store.write() as sql:
        await sql.execute_many(
            "INSERT INTO on_hand (gtin, biz_location, serialized_count, class_quantity) VALUES (?, ?, ?, ?)",
            [(code, location, 1, 0.0) for code, location in keys],
        )
    return keys


# ---- GetPosition: where it is now, where it was last seen ------------------------------------


async def test_a_received_item_is_present_where_it_was_seen(channel: aio.Channel, inventory: Any) -> None:
    await send(channel, make_event(1, objects=[ITEM]))
    assert where(await position(inventory)) == (True, False, DOCK, DOCK)


async def test_after_a_delete_event_it_is_not_present_and_keeps_where_it_was_last_seen(
    channel: aio.Channel, inventory: Any
) -> None:
    await send(
        channel,
        make_event(1, objects=[ITEM]),
        make_event(2, objects=[ITEM], action=events_pb2.ACTION_DELETE, biz_step=events_pb2.BIZ_STEP_DESTROYING),
    )
    found = await position(inventory)
    # biz_location stays "" after a DELETE, as older clients got it.
    assert where(found) == (False, False, DOCK, "")
    assert found.biz_step == events_pb2.BIZ_STEP_DESTROYING


async def test_after_a_departure_it_is_not_present_but_in_transit_from_its_last_place(
    channel: aio.Channel, inventory: Any
) -> None:
    await send(
        channel,
        make_event(1, objects=[ITEM], biz_location=STORAGE),
        make_event(2, objects=[ITEM], biz_step=events_pb2.BIZ_STEP_DEPARTING),
    )
    assert where(await position(inventory)) == (False, True, DOCK, DOCK)
    reply = await inventory.ListOnHand(inventory_pb2.ListOnHandRequest())
    assert list(reply.on_hand) == []  # not present: counted nowhere


async def test_seen_again_after_a_delete_it_is_present_again(channel: aio.Channel, inventory: Any) -> None:
    await send(
        channel,
        make_event(1, objects=[ITEM]),
        make_event(2, objects=[ITEM], action=events_pb2.ACTION_DELETE),
        make_event(3, objects=[ITEM], biz_location=STORAGE, biz_step=events_pb2.BIZ_STEP_STORING),
    )
    assert where(await position(inventory)) == (True, False, STORAGE, STORAGE)


# ---- ListOnHand: paging ----------------------------------------------------------------------


async def test_on_hand_pages_by_gtin_then_location_without_repeats(channel: aio.Channel, inventory: Any) -> None:
    # Locations sent in reverse, so the listed order comes from the query, not from insertion.
    await send(channel, *(quantities_at(seq, loc, GTINS) for seq, loc in enumerate(reversed(LOCATIONS), 1)))
    everything = sorted((code, location) for code in GTINS for location in LOCATIONS)
    pages = await list_pages(inventory, page_size=5)
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [key for page in pages for key in page] == everything
    # An exact multiple of the page size ends without an empty page.
    assert [len(page) for page in await list_pages(inventory, page_size=4)] == [4, 4, 4]
    # Filters page too.
    pages = await list_pages(inventory, page_size=3, gtin=GTINS[1])
    assert [key for page in pages for key in page] == [(GTINS[1], location) for location in sorted(LOCATIONS)]


async def test_rows_that_change_between_pages_are_neither_repeated_nor_skipped(
    channel: aio.Channel, inventory: Any
) -> None:
    await send(channel, *(quantities_at(seq, loc, GTINS[1:2]) for seq, loc in enumerate(LOCATIONS, 1)))
    first = await inventory.ListOnHand(inventory_pb2.ListOnHandRequest(page_size=2))
    assert [row.biz_location for row in first.on_hand] == LOCATIONS[:2]
    # Between pages: a row appears before the cursor, one after it, and one after it drops to zero.
    removed = make_event(6, action=events_pb2.ACTION_DELETE, biz_location=LOCATIONS[3])
    removed.quantities.add(gtin=GTINS[1], quantity=1.0)
    async with Uplink(channel) as up:
        await up.hello()
        await up.send(5, [quantities_at(5, LOCATIONS[0], GTINS[:1]), removed])
        await up.send(7, [quantities_at(7, LOCATIONS[2], GTINS[2:])])
        await up.finish()
    rest = await inventory.ListOnHand(inventory_pb2.ListOnHandRequest(page_size=2, page_token=first.next_page_token))
    assert [(row.gtin, row.biz_location) for row in rest.on_hand] == [
        (GTINS[1], LOCATIONS[2]),
        (GTINS[2], LOCATIONS[2]),
    ]
    assert rest.next_page_token == ""


async def test_no_page_size_answers_every_row_in_one_page_as_before_paging(
    channel: aio.Channel, inventory: Any
) -> None:
    await send(channel, *(quantities_at(seq, loc, GTINS) for seq, loc in enumerate(LOCATIONS, 1)))
    reply = await inventory.ListOnHand(inventory_pb2.ListOnHandRequest())
    assert len(reply.on_hand) == len(GTINS) * len(LOCATIONS)
    assert reply.next_page_token == ""


async def test_more_rows_than_a_page_fail_an_unpaged_request_and_page_with_page_size(
    inventory: Any, open_test_store: StoreOpener
) -> None:
    keys = await fill_on_hand(open_test_store, ON_HAND_PAGE_SIZE_MAX + 1)
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListOnHand(inventory_pb2.ListOnHandRequest())
    # A client from before paging would read a first page as the whole table: it gets an error.
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "set page_size" in str(raised.value.details())
    pages = await list_pages(inventory, page_size=ON_HAND_PAGE_SIZE_MAX)
    assert [len(page) for page in pages] == [ON_HAND_PAGE_SIZE_MAX, 1]
    assert [key for page in pages for key in page] == keys


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !",
        "e30",  # {}
        encode_event_token(1, "urn:uuid:x"),  # a ListEvents token
        encode_on_hand_token(GTIN_A, "\ud800"),  # no store can take a lone surrogate
    ],
    ids=["not-base64", "empty-object", "events-token", "lone-surrogate"],
)
async def test_a_bad_page_token_is_invalid_argument(inventory: Any, token: str) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListOnHand(inventory_pb2.ListOnHandRequest(page_token=token))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "page_token is malformed"


async def test_a_page_size_above_the_maximum_is_invalid_argument(inventory: Any) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListOnHand(inventory_pb2.ListOnHandRequest(page_size=ON_HAND_PAGE_SIZE_MAX + 1))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == f"page_size {ON_HAND_PAGE_SIZE_MAX + 1} is above the maximum 50000"
    reply = await inventory.ListOnHand(inventory_pb2.ListOnHandRequest(page_size=ON_HAND_PAGE_SIZE_MAX))
    assert list(reply.on_hand) == [] and reply.next_page_token == ""
