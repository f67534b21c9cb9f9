"""ListEvents, ListQuarantine and ListGateways: order, paging, filters and bad requests."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from cloud_testkit import BASE_TIME_S, GATEWAY, GTIN_A, GTIN_B, STORAGE, Uplink, item, make_event
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import events_pb2, inventory_pb2

from cloud.query.paging import encode_quarantine_token


async def list_all(inventory: Any, page_size: int, **filters: Any) -> tuple[list[events_pb2.Event], int]:
    """Every event matching `filters`, following page tokens; and how many pages it took."""
    events: list[events_pb2.Event] = []
    token, pages = "", 0
    while True:
        reply = await inventory.ListEvents(
            inventory_pb2.ListEventsRequest(page_size=page_size, page_token=token, **filters)
        )
        events.extend(reply.events)
        pages += 1
        token = reply.next_page_token
        if not token:
            return events, pages


async def ingest(channel: aio.Channel, events: list[events_pb2.Event], gateway_id: str = GATEWAY) -> None:
    async with Uplink(channel) as up:
        await up.hello(gateway_id=gateway_id)
        await up.send(1, events)
        await up.finish()


async def test_events_come_newest_first_across_pages(channel: aio.Channel, inventory: Any) -> None:
    # Seqs 1..10 with two pairs sharing an event_time, so paging must break ties by event_id.
    events = [make_event(seq, time_s=BASE_TIME_S + seq // 2) for seq in range(1, 11)]
    await ingest(channel, events)
    listed, pages = await list_all(inventory, page_size=3)
    keys = [(e.event_time.seconds, e.event_id) for e in listed]
    assert keys == sorted(((e.event_time.seconds, e.event_id) for e in events), reverse=True)
    assert pages == 4
    assert len({e.event_id for e in listed}) == 10


async def test_exact_multiple_of_the_page_size_ends_without_an_empty_page(channel: aio.Channel, inventory: Any) -> None:
    await ingest(channel, [make_event(seq) for seq in range(1, 5)])
    listed, pages = await list_all(inventory, page_size=2)
    assert (len(listed), pages) == (4, 2)


async def test_default_page_size_is_100(channel: aio.Channel, inventory: Any) -> None:
    await ingest(channel, [make_event(seq) for seq in range(1, 106)])
    reply = await inventory.ListEvents(inventory_pb2.ListEventsRequest())
    assert len(reply.events) == 100 and reply.next_page_token


async def test_filters(channel: aio.Channel, inventory: Any) -> None:
    tagged_b = item(GTIN_B, "55")
    await ingest(
        channel,
        [
            make_event(1, objects=[item(GTIN_A, "1")]),
            make_event(2, objects=[tagged_b], biz_location=STORAGE, biz_step=events_pb2.BIZ_STEP_STORING),
            make_event(3, quantities=[events_pb2.QuantityElement(gtin=GTIN_B, quantity=3)]),
        ],
    )
    await ingest(channel, [make_event(1, gateway_id="gw-yard", objects=[item(GTIN_A, "9")])], "gw-yard")

    async def seqs(**filters: Any) -> list[tuple[str, int]]:
        listed, _ = await list_all(inventory, page_size=10, **filters)
        return sorted((e.gateway_id, e.seq) for e in listed)

    assert await seqs(gateway_id="gw-yard") == [("gw-yard", 1)]
    assert await seqs(biz_location=STORAGE) == [(GATEWAY, 2)]
    assert await seqs(gtin=GTIN_B) == [(GATEWAY, 2), (GATEWAY, 3)]  # tagged and class-level
    assert await seqs(object_id=tagged_b.id) == [(GATEWAY, 2)]
    assert await seqs(biz_step=events_pb2.BIZ_STEP_STORING) == [(GATEWAY, 2)]
    assert await seqs(gtin=GTIN_A, gateway_id=GATEWAY) == [(GATEWAY, 1)]
    assert await seqs(since=Timestamp(seconds=BASE_TIME_S + 2), until=Timestamp(seconds=BASE_TIME_S + 3)) == [
        (GATEWAY, 2)
    ]


@pytest.mark.parametrize("token", ["not base64 at all!", "e30", "eyJraW5kIjoiZXZlbnRzIn0", "ü", "x" * 5000])
async def test_malformed_page_token_is_invalid_argument(inventory: Any, token: str) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_token=token))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "page_token is malformed"


async def test_a_quarantine_token_is_not_an_events_token(inventory: Any) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_token=encode_quarantine_token(5)))
    assert raised.value.details() == "page_token is malformed"


async def test_page_size_above_1000_is_invalid_argument(inventory: Any) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_size=1001))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1000" in str(raised.value.details())


async def test_out_of_range_since_is_invalid_argument(inventory: Any) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListEvents(inventory_pb2.ListEventsRequest(since=Timestamp(seconds=2**62)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_quarantine_pages_newest_first(channel: aio.Channel, inventory: Any) -> None:
    broken = []
    for seq in range(1, 6):
        event = make_event(seq)
        event.event_id = ""
        broken.append(event)
    await ingest(channel, broken)
    seen: list[int] = []
    token = ""
    while True:
        reply = await inventory.ListQuarantine(inventory_pb2.ListQuarantineRequest(page_size=2, page_token=token))
        seen.extend(entry.seq for entry in reply.entries)
        token = reply.next_page_token
        if not token:
            break
    assert seen == [5, 4, 3, 2, 1]
    with pytest.raises(aio.AioRpcError) as raised:
        await inventory.ListQuarantine(inventory_pb2.ListQuarantineRequest(page_token="garbage"))
    assert raised.value.details() == "page_token is malformed"


async def test_gateways_list_each_outbox(channel: aio.Channel, inventory: Any) -> None:
    await ingest(channel, [make_event(1), make_event(2)])
    await ingest(channel, [make_event(1, gateway_id="gw-yard")], "gw-yard")
    reply = await inventory.ListGateways(inventory_pb2.ListGatewaysRequest())
    assert [(g.gateway_id, g.committed_through_seq, g.events_stored) for g in reply.gateways] == [
        (GATEWAY, 2, 2),
        ("gw-yard", 1, 1),
    ]
    assert all(g.last_contact.seconds > 0 for g in reply.gateways)
