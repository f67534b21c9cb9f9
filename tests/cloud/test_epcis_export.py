"""EpcisService.ExportEvents over a real server on 127.0.0.1 port 0: the document, paging (by page size and
by document size), filters, bad requests, health and reflection.

Listing is InventoryService.ListEvents underneath (tested on both stores in test_cloud_query.py); here the
round trip runs on both stores and the rest on SQLite.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from cloud_testkit import BASE_TIME_S, GATEWAY, GTIN_A, Uplink, item, make_event, sscc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tallyport.v1 import epcis_pb2, epcis_pb2_grpc, events_pb2, inventory_pb2
from test_epcis_jsonld import document_problems

from cloud.epcis import service as epcis_service
from cloud.epcis.event_hash import event_hash_id
from cloud.epcis.jsonld import EPCIS_NAMESPACES, event_to_jsonld

EPCIS_SERVICE = "tallyport.v1.EpcisService"


@pytest.fixture
def store_backend() -> str:
    return "sqlite"


@pytest.fixture
def epcis(channel: aio.Channel) -> Any:
    return epcis_pb2_grpc.EpcisServiceStub(channel)


async def ingest(channel: aio.Channel, events: list[events_pb2.Event], gateway_id: str = GATEWAY) -> None:
    async with Uplink(channel) as up:
        await up.hello(gateway_id=gateway_id)
        ack = await up.send(1, events)
        assert not ack.rejects, ack
        await up.finish()


def four_kinds_of_event() -> list[events_pb2.Event]:
    pallet = events_pb2.IdentifiedObject(
        id=f"https://id.gs1.org/00/{sscc('10614141123456789')}", sscc=sscc("10614141123456789")
    )
    sensor = make_event(4, biz_step=events_pb2.BIZ_STEP_SENSOR_REPORTING, objects=[])
    sensor.sensor_reports.append(events_pb2.SensorReport(type="Temperature", value=4.5, uom="CEL", device_id="probe-1"))
    sensor.event_class = events_pb2.EVENT_CLASS_SENSOR
    return [
        make_event(1, objects=[item(GTIN_A, "1"), item(GTIN_A, "2")]),
        make_event(
            2,
            event_type=events_pb2.EVENT_TYPE_AGGREGATION,
            action=events_pb2.ACTION_ADD,
            biz_step=events_pb2.BIZ_STEP_PACKING,
            parent=pallet,
            objects=[item(GTIN_A, "1"), item(GTIN_A, "2")],
        ),
        make_event(3, action=events_pb2.ACTION_ADD, quantities=[events_pb2.QuantityElement(gtin=GTIN_A, quantity=5)]),
        sensor,
    ]


async def export_all(epcis: Any, page_size: int, **filters: Any) -> list[epcis_pb2.ExportEventsResponse]:
    """Every page, following the tokens."""
    pages = []
    request = epcis_pb2.ExportEventsRequest(page_size=page_size, **filters)
    while True:
        reply = await epcis.ExportEvents(request, timeout=10)
        pages.append(reply)
        if not reply.next_page_token:
            return pages
        request.page_token = reply.next_page_token


def event_list(reply: epcis_pb2.ExportEventsResponse) -> list[dict[str, Any]]:
    document = json.loads(reply.document_json)
    assert document_problems(document) == []
    events: list[dict[str, Any]] = document["epcisBody"]["eventList"]
    assert reply.event_count == len(events)
    return events


@pytest.mark.parametrize("store_backend", ["sqlite", "postgres"])
async def test_export_round_trip(channel: aio.Channel, epcis: Any) -> None:
    events = four_kinds_of_event()
    await ingest(channel, events)
    reply = await epcis.ExportEvents(epcis_pb2.ExportEventsRequest(), timeout=10)
    exported = event_list(reply)
    assert reply.next_page_token == ""
    # Newest first, as ListEvents; each exactly the mapping of the stored event.
    assert exported == [event_to_jsonld(event) for event in reversed(events)]
    assert [event["type"] for event in exported] == ["ObjectEvent", "ObjectEvent", "AggregationEvent", "ObjectEvent"]
    for event in exported:
        # Anyone holding the document can recompute the eventID from the event itself.
        rest = {name: value for name, value in event.items() if name != "eventID"}
        assert event["eventID"] == event_hash_id(rest, EPCIS_NAMESPACES)
    assert len({event["eventID"] for event in exported}) == 4


async def test_pages_follow_list_events_order(channel: aio.Channel, epcis: Any, inventory: Any) -> None:
    # Pairs of events share an event_time: the pages must break ties by event_id, as ListEvents does.
    events = [make_event(seq, time_s=BASE_TIME_S + seq // 2) for seq in range(1, 8)]
    await ingest(channel, events)
    pages = await export_all(epcis, page_size=3)
    assert [page.event_count for page in pages] == [3, 3, 1]
    exported_ids = [event["tallyport:eventId"] for page in pages for event in event_list(page)]
    listed = await inventory.ListEvents(inventory_pb2.ListEventsRequest(page_size=100), timeout=10)
    assert exported_ids == [event.event_id for event in listed.events]
    assert len(set(exported_ids)) == 7


async def test_filters_are_those_of_list_events(channel: aio.Channel, epcis: Any) -> None:
    await ingest(channel, [make_event(seq, biz_step=events_pb2.BIZ_STEP_RECEIVING) for seq in (1, 2)])
    await ingest(channel, [make_event(1, gateway_id="gw-dock5", biz_step=events_pb2.BIZ_STEP_STORING)], "gw-dock5")
    only_dock5 = event_list((await export_all(epcis, 10, gateway_id="gw-dock5"))[0])
    assert [(event["tallyport:gatewayId"], event["bizStep"]) for event in only_dock5] == [("gw-dock5", "storing")]
    receiving = event_list((await export_all(epcis, 10, biz_step=events_pb2.BIZ_STEP_RECEIVING))[0])
    assert {event["tallyport:seq"] for event in receiving} == {1, 2}
    window = event_list((await export_all(epcis, 10, since=Timestamp(seconds=BASE_TIME_S + 2), gateway_id=GATEWAY))[0])
    assert [event["tallyport:seq"] for event in window] == [2]


async def test_an_empty_store_exports_an_empty_document(epcis: Any) -> None:
    reply = await epcis.ExportEvents(epcis_pb2.ExportEventsRequest(), timeout=10)
    assert (event_list(reply), reply.next_page_token) == ([], "")


async def test_a_page_is_cut_where_the_document_would_grow_too_big(
    channel: aio.Channel, epcis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [make_event(seq, objects=[item(GTIN_A, str(seq * 100 + n)) for n in range(20)]) for seq in range(1, 7)]
    await ingest(channel, events)
    one_event_bytes = len(json.dumps(event_to_jsonld(events[0]), separators=(",", ":")).encode())
    # Room for two events and a half: every page holds two, whatever page_size asks for.
    monkeypatch.setattr(
        epcis_service, "DOCUMENT_BYTES_MAX", epcis_service.DOCUMENT_ENVELOPE_BYTES + 5 * one_event_bytes // 2
    )
    pages = await export_all(epcis, page_size=10)
    assert [page.event_count for page in pages] == [2, 2, 2]
    exported_seqs = [event["tallyport:seq"] for page in pages for event in event_list(page)]
    assert exported_seqs == [6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page_size": 1001}, "page_size 1001 is above the maximum 1000"),
        ({"page_token": "not-a-token"}, "page_token is malformed"),
        ({"since": Timestamp(seconds=2**62)}, "since is not a valid timestamp"),
        ({"until": Timestamp(seconds=0, nanos=-1)}, "until is not a valid timestamp"),
        ({"biz_step": 999}, "biz_step 999 is not a known BizStep"),
    ],
)
async def test_bad_requests_are_invalid_argument_naming_the_field(
    epcis: Any, request_fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await epcis.ExportEvents(epcis_pb2.ExportEventsRequest(**request_fields), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == field


async def test_health_and_reflection_know_the_service(channel: aio.Channel) -> None:
    health: Any = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=EPCIS_SERVICE), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    await call.done_writing()
    assert EPCIS_SERVICE in {service.name for service in listed.list_services_response.service}
