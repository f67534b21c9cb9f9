"""`InventoryService`: read-only queries over what ingest committed.

GetPosition answers where an object is now (`present`, `in_transit`) beside where it was
last seen (`last_seen_biz_location`): present is the store's "not taken out by an OBJECT
event with action DELETE" and not in transit, as on-hand counts it
(`cloud.projections.counted_at`, which also needs a GTIN and a biz_location). biz_location
keeps its old meaning for older clients: "" after such a DELETE, else the last-seen place.

ListOnHand pages by keyset on (gtin, biz_location), the table's primary key, like ListEvents
on (event_time, event_id) (`cloud.query.paging`).

Status codes: INVALID_ARGUMENT for a bad request (page_size above its maximum, malformed
page_token, empty id, out-of-range timestamp), NOT_FOUND for an unknown object,
RESOURCE_EXHAUSTED for a ListOnHand request without page_size or page_token (as a client from
before paging sends) that matches more rows than one page, UNAVAILABLE when the store fails.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc

from cloud.errors import StoreError, ValidationError
from cloud.gateway_alarms import alarm_messages, list_gateway_alarms
from cloud.query.paging import (
    ON_HAND_PAGE_SIZE_DEFAULT,
    ON_HAND_PAGE_SIZE_MAX,
    decode_event_token,
    decode_on_hand_token,
    decode_quarantine_token,
    encode_event_token,
    encode_on_hand_token,
    encode_quarantine_token,
    page_size,
)
from cloud.store import EventQuery, GatewayRecord, OnHandRecord, PositionRecord, Store
from cloud.timestamps import from_micros, to_micros

__all__ = ["InventoryService"]

# The range google.protobuf.Timestamp allows: 0001-01-01 to 9999-12-31.
TIMESTAMP_SECONDS_MIN = -62_135_596_800
TIMESTAMP_SECONDS_MAX = 253_402_300_799

Answer = TypeVar("Answer")
Context = aio.ServicerContext[Any, Any]


class InventoryService(inventory_pb2_grpc.InventoryServiceServicer):
    """Positions, on-hand, events, quarantine and gateway delivery state."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def GetPosition(self, request: inventory_pb2.GetPositionRequest, context: Context) -> inventory_pb2.Position:
        """The position of one object by canonical id, EPC URI or EPC hex."""
        if not request.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id is empty")
        position = await _answer(context, self._store.get_position(request.id))
        if position is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no position for {request.id[:200]!r} (looked up as object id, EPC URI and EPC hex)",
            )
        return _position_message(position)

    async def ListOnHand(
        self, request: inventory_pb2.ListOnHandRequest, context: Context
    ) -> inventory_pb2.ListOnHandResponse:
        """On-hand rows with a non-zero count or class quantity, by GTIN then location, paged."""
        try:
            size = page_size(request.page_size, ON_HAND_PAGE_SIZE_DEFAULT, ON_HAND_PAGE_SIZE_MAX)
            after = decode_on_hand_token(request.page_token) if request.page_token else None
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # One more than the page, to know whether another page follows.
        rows = await _answer(
            context, self._store.list_on_hand(request.gtin, request.biz_location, limit=size + 1, after=after)
        )
        page, more = rows[:size], len(rows) > size
        if more and not request.page_size and not request.page_token:
            # A client from before paging would ignore next_page_token and take a first page
            # for the whole table: it gets the error it always got instead.
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {size} on-hand rows match; set page_size (at most {ON_HAND_PAGE_SIZE_MAX}) "
                "and follow next_page_token, or filter by gtin or biz_location",
            )
        token = encode_on_hand_token(page[-1].gtin, page[-1].biz_location) if more else ""
        return inventory_pb2.ListOnHandResponse(on_hand=[_on_hand_message(row) for row in page], next_page_token=token)

    async def ListEvents(
        self, request: inventory_pb2.ListEventsRequest, context: Context
    ) -> inventory_pb2.ListEventsResponse:
        """Stored events, newest first by (event_time, event_id), filtered and paged."""
        try:
            query = _event_query(request)
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = await _answer(context, self._store.list_events(query))
        page, more = rows[: query.limit - 1], len(rows) == query.limit
        token = encode_event_token(page[-1].event_time_us, page[-1].event_id) if more and page else ""
        return inventory_pb2.ListEventsResponse(
            events=[events_pb2.Event.FromString(row.payload) for row in page], next_page_token=token
        )

    async def ListQuarantine(
        self, request: inventory_pb2.ListQuarantineRequest, context: Context
    ) -> inventory_pb2.ListQuarantineResponse:
        """Rejected events with their reason, newest first, paged."""
        try:
            size, before = _quarantine_page(request)
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = await _answer(context, self._store.list_quarantine(size + 1, before))
        page = rows[:size]
        token = encode_quarantine_token(page[-1].quarantine_id) if len(rows) > size else ""
        return inventory_pb2.ListQuarantineResponse(
            entries=[
                inventory_pb2.QuarantinedEvent(
                    gateway_id=row.gateway_id,
                    seq=row.seq,
                    event_id=row.event_id,
                    reason=row.reason,
                    received_at=from_micros(row.received_at_us),
                    payload=row.payload,
                )
                for row in page
            ],
            next_page_token=token,
        )

    async def ListGateways(
        self, request: inventory_pb2.ListGatewaysRequest, context: Context
    ) -> inventory_pb2.ListGatewaysResponse:
        """Every (gateway, outbox) with its high-water seq, last contact, gaps and the gateway's alarms."""
        records = await _answer(context, self._store.list_gateways())
        alarms = await _answer(context, list_gateway_alarms(self._store))
        gateways = []
        for record in records:
            gateway = _gateway_message(record)
            gateway.alarms.extend(alarm_messages(alarms.get(record.state.gateway_id, [])))
            gateways.append(gateway)
        return inventory_pb2.ListGatewaysResponse(gateways=gateways)


async def _answer(context: Context, work: Awaitable[Answer]) -> Answer:
    """Await a store call, turning a StoreError into UNAVAILABLE."""
    try:
        return await work
    except StoreError as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store failed: {exc}")


def _event_query(request: inventory_pb2.ListEventsRequest) -> EventQuery:
    size = page_size(request.page_size)
    return EventQuery(
        limit=size + 1,  # one more than the page, to know whether another page follows
        gateway_id=request.gateway_id,
        biz_location=request.biz_location,
        gtin=request.gtin,
        object_id=request.object_id,
        biz_step=request.biz_step,
        since_us=_micros(request.since, "since") if request.HasField("since") else None,
        until_us=_micros(request.until, "until") if request.HasField("until") else None,
        before=decode_event_token(request.page_token) if request.page_token else None,
    )


def _quarantine_page(request: inventory_pb2.ListQuarantineRequest) -> tuple[int, int | None]:
    size = page_size(request.page_size)
    return size, decode_quarantine_token(request.page_token) if request.page_token else None


def _micros(timestamp: Timestamp, name: str) -> int:
    if not (TIMESTAMP_SECONDS_MIN <= timestamp.seconds <= TIMESTAMP_SECONDS_MAX and 0 <= timestamp.nanos < 10**9):
        raise ValidationError(f"{name} is not a valid timestamp")
    return to_micros(timestamp)


def _on_hand_message(row: OnHandRecord) -> inventory_pb2.OnHand:
    return inventory_pb2.OnHand(
        gtin=row.gtin,
        biz_location=row.biz_location,
        quantity=row.quantity,
        serialized_count=row.serialized_count,
        class_quantity=row.class_quantity,
    )


def _position_message(position: PositionRecord) -> inventory_pb2.Position:
    return inventory_pb2.Position(
        id=position.object_id,
        epc_uri=position.epc_uri,
        gtin=position.gtin,
        sscc=position.sscc,
        # position.present is "not taken out by a DELETE"; the contract's present also excludes
        # in transit, so that present means "at last_seen_biz_location now" on its own.
        present=position.present and not position.in_transit,
        last_seen_biz_location=position.biz_location,
        biz_location=position.biz_location if position.present else "",
        read_point_id=position.read_point_id,
        biz_step=position.biz_step,  # type: ignore[arg-type]  # stored as the enum's number
        disposition=position.disposition,  # type: ignore[arg-type]
        in_transit=position.in_transit,
        event_time=from_micros(position.event_time_us),
        event_id=position.event_id,
        gateway_id=position.gateway_id,
    )


def _gateway_message(record: GatewayRecord) -> inventory_pb2.GatewayState:
    state = record.state
    return inventory_pb2.GatewayState(
        gateway_id=state.gateway_id,
        outbox_id=state.outbox_id,
        committed_through_seq=state.committed_through_seq,
        last_contact=from_micros(state.last_contact_us),
        events_stored=state.events_stored,
        clock_offset_ms=state.clock_offset_ms,
        gaps=[
            inventory_pb2.Gap(
                first_seq=gap.first_seq,
                last_seq=gap.last_seq,
                reason=gap.reason,
                recorded_at=from_micros(gap.recorded_at_us),
            )
            for gap in record.gaps
        ],
    )
