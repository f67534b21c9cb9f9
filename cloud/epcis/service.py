"""`EpcisService`: stored events exported as EPCIS 2.0 JSON-LD documents, one document per page.

Listing is InventoryService.ListEvents itself (called in-process): the same filters, order, page
tokens and status codes — INVALID_ARGUMENT naming the field (page_size above 1000, a malformed
page_token, an out-of-range since/until; here also a biz_step number the enum does not know),
UNAVAILABLE when the store fails. This service only turns
each page into an EPCISDocument (`cloud.epcis.jsonld`).

A page is cut short when its document would pass `DOCUMENT_BYTES_MAX`, so that it stays under
gRPC's default 4 MiB receive limit on the client; the page token then continues after the last
event the document holds. One event bigger than that on its own is still sent, alone.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from grpc import aio
from tallyport.v1 import epcis_pb2, epcis_pb2_grpc, events_pb2, inventory_pb2

from cloud.epcis.jsonld import epcis_document, event_to_jsonld
from cloud.errors import ValidationError
from cloud.query.paging import encode_event_token
from cloud.query.service import InventoryService
from cloud.store import Store
from cloud.timestamps import Clock, system_clock_us, to_micros

__all__ = ["DOCUMENT_BYTES_MAX", "EpcisService"]

DOCUMENT_BYTES_MAX = 3 * 1024 * 1024
# What the document adds around its events (@context, creationDate, …), with room to spare.
DOCUMENT_ENVELOPE_BYTES = 1024

Context = aio.ServicerContext[Any, Any]
_KNOWN_BIZ_STEPS = frozenset(events_pb2.BizStep.values())


class EpcisService(epcis_pb2_grpc.EpcisServiceServicer):
    """ExportEvents: one page of stored events as one EPCISDocument."""

    def __init__(self, store: Store, clock: Clock = system_clock_us) -> None:
        self._inventory = InventoryService(store)
        self._clock = clock

    async def ExportEvents(
        self, request: epcis_pb2.ExportEventsRequest, context: Context
    ) -> epcis_pb2.ExportEventsResponse:
        """The page of events ListEvents would answer, as an EPCISDocument (see the module docstring)."""
        if request.biz_step not in _KNOWN_BIZ_STEPS:  # proto3 enums are open: refuse what would match nothing
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"biz_step {request.biz_step} is not a known BizStep")
        page = await self._inventory.ListEvents(_list_request(request), context)
        event_list: list[dict[str, Any]] = []
        size = DOCUMENT_ENVELOPE_BYTES
        next_token = page.next_page_token
        for index, event in enumerate(page.events):
            try:
                entry = event_to_jsonld(event)
            except ValidationError as exc:  # stored events passed validation: this is a contract drift
                await context.abort(grpc.StatusCode.INTERNAL, f"cannot export a stored event: {exc}")
            entry_bytes = len(_dumps(entry).encode()) + 1  # +1: the comma between events
            if event_list and size + entry_bytes > DOCUMENT_BYTES_MAX:
                next_token = _token_after(page.events[index - 1])
                break
            event_list.append(entry)
            size += entry_bytes
        document = epcis_document(event_list, self._clock())
        return epcis_pb2.ExportEventsResponse(
            document_json=_dumps(document), event_count=len(event_list), next_page_token=next_token
        )


def _list_request(request: epcis_pb2.ExportEventsRequest) -> inventory_pb2.ListEventsRequest:
    listing = inventory_pb2.ListEventsRequest(
        page_size=request.page_size,
        page_token=request.page_token,
        gateway_id=request.gateway_id,
        biz_location=request.biz_location,
        gtin=request.gtin,
        object_id=request.object_id,
        biz_step=request.biz_step,
    )
    if request.HasField("since"):
        listing.since.CopyFrom(request.since)
    if request.HasField("until"):
        listing.until.CopyFrom(request.until)
    return listing


def _token_after(event: events_pb2.Event) -> str:
    return encode_event_token(to_micros(event.event_time), event.event_id)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
