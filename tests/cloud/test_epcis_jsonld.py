"""Stored events → EPCIS 2.0 JSON-LD: an object event, an aggregation, a barcode quantity and a climate
report, each checked field by field and against the structural rules of the EPCIS JSON Schema.

`epcis_structure_problems` is shared with the export tests (test_epcis_export.py imports it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from cloud_testkit import DOCK, GATEWAY, GTIN_A, READ_POINT, gtin, item, make_event, sscc
from google.protobuf.timestamp_pb2 import Timestamp
from tallyport.v1 import events_pb2

from cloud.epcis.event_hash import event_hash_id
from cloud.epcis.jsonld import (
    EPCIS_CONTEXT_URL,
    EPCIS_NAMESPACES,
    TALLYPORT_NAMESPACE,
    epcis_document,
    event_to_jsonld,
    format_epcis_time,
)

# §6.2 of ../shared/reference/standards.md (the bizStep and disposition enums of the JSON Schema).
BIZ_STEPS = frozenset(
    [
        "accepting",
        "arriving",
        "assembling",
        "collecting",
        "commissioning",
        "consigning",
        "creating_class_instance",
        "cycle_counting",
        "decommissioning",
        "departing",
        "destroying",
        "disassembling",
        "dispensing",
        "encoding",
        "entering_exiting",
        "holding",
        "inspecting",
        "installing",
        "killing",
        "loading",
        "other",
        "packing",
        "picking",
        "receiving",
        "removing",
        "repackaging",
        "repairing",
        "replacing",
        "reserving",
        "retail_selling",
        "shipping",
        "staging_outbound",
        "stock_taking",
        "stocking",
        "storing",
        "transporting",
        "unloading",
        "unpacking",
        "void_shipping",
        "sensor_reporting",
        "sampling",
    ]
)
DISPOSITIONS = frozenset(
    [
        "active",
        "container_closed",
        "damaged",
        "destroyed",
        "dispensed",
        "disposed",
        "encoded",
        "expired",
        "in_progress",
        "in_transit",
        "inactive",
        "no_pedigree_match",
        "non_sellable_other",
        "partially_dispensed",
        "recalled",
        "reserved",
        "retail_sold",
        "returned",
        "sellable_accessible",
        "sellable_not_accessible",
        "stolen",
        "unknown",
        "available",
        "completeness_verified",
        "completeness_inferred",
        "conformant",
        "container_open",
        "mismatch_instance",
        "mismatch_class",
        "mismatch_quantity",
        "needs_replacement",
        "non_conformant",
        "unavailable",
    ]
)
DATE_TIME_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
TIME_ZONE_OFFSET = re.compile(r"[+-]\d{2}:\d{2}")
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
EVENT_HASH_ID = re.compile(r"ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0")
COMMON_FIELDS = frozenset(
    {"type", "eventID", "eventTime", "eventTimeZoneOffset", "recordTime", "action", "bizStep", "disposition"}
    | {"readPoint", "bizLocation", "bizTransactionList", "sourceList", "destinationList", "sensorElementList"}
)
FIELDS_BY_TYPE = {
    "ObjectEvent": COMMON_FIELDS | {"epcList", "quantityList", "ilmd"},
    "AggregationEvent": COMMON_FIELDS | {"parentID", "childEPCs", "childQuantityList"},
}
REQUIRED_BY_TYPE = {
    "ObjectEvent": {"type", "action", "eventTime", "eventTimeZoneOffset"},
    "AggregationEvent": {"type", "action", "eventTime", "eventTimeZoneOffset"},
}


def epcis_structure_problems(event: dict[str, Any], prefixes: set[str]) -> list[str]:
    """What breaks the EPCIS 2.0 JSON Schema's structural rules (§6.1) in one event; [] when none."""
    problems: list[str] = []
    kind = event.get("type")
    if kind not in FIELDS_BY_TYPE:
        return [f"type {kind!r}"]
    problems += [f"missing {name}" for name in sorted(REQUIRED_BY_TYPE[kind] - set(event))]
    if kind == "ObjectEvent" and "epcList" not in event and "quantityList" not in event:
        problems.append("an ObjectEvent needs epcList or quantityList")
    for name in event:
        if name not in FIELDS_BY_TYPE[kind] and name.partition(":")[0] not in prefixes:
            problems.append(f"field {name!r} is neither an {kind} field nor a declared extension")
    problems += _time_problems(event)
    if event.get("action") not in ("ADD", "OBSERVE", "DELETE"):
        problems.append(f"action {event.get('action')!r}")
    if "bizStep" in event and event["bizStep"] not in BIZ_STEPS:
        problems.append(f"bizStep {event['bizStep']!r}")
    if "disposition" in event and event["disposition"] not in DISPOSITIONS:
        problems.append(f"disposition {event['disposition']!r}")
    if "eventID" in event and not EVENT_HASH_ID.fullmatch(event["eventID"]):
        problems.append(f"eventID {event['eventID']!r}")
    problems += _what_problems(event)
    for place in ("readPoint", "bizLocation"):
        if place in event and (set(event[place]) != {"id"} or not URI.fullmatch(event[place]["id"])):
            problems.append(f"{place} {event[place]!r}")
    problems += _sensor_problems(event.get("sensorElementList", []))
    return problems


def _time_problems(event: dict[str, Any]) -> list[str]:
    problems = []
    if not DATE_TIME_STAMP.fullmatch(event.get("eventTime", "")):
        problems.append(f"eventTime {event.get('eventTime')!r}")
    if not TIME_ZONE_OFFSET.fullmatch(event.get("eventTimeZoneOffset", "")):
        problems.append(f"eventTimeZoneOffset {event.get('eventTimeZoneOffset')!r}")
    return problems


def _what_problems(event: dict[str, Any]) -> list[str]:
    problems = []
    for name in ("epcList", "childEPCs"):
        if name in event and not (
            isinstance(event[name], list) and all(isinstance(e, str) and URI.fullmatch(e) for e in event[name])
        ):
            problems.append(f"{name} {event[name]!r}")
    if "parentID" in event and not URI.fullmatch(event["parentID"]):
        problems.append(f"parentID {event['parentID']!r}")
    for name in ("quantityList", "childQuantityList"):
        for element in event.get(name, []):
            if not (
                set(element) <= {"epcClass", "quantity", "uom"}
                and URI.fullmatch(element.get("epcClass", ""))
                and isinstance(element.get("quantity"), int | float)
                and isinstance(element.get("uom", ""), str)
            ):
                problems.append(f"{name} element {element!r}")
    return problems


def _sensor_problems(elements: list[dict[str, Any]]) -> list[str]:
    problems = []
    for element in elements:
        if set(element) - {"sensorMetadata", "sensorReport"} or not element.get("sensorReport"):
            problems.append(f"sensorElement {element!r}")
            continue
        metadata = element.get("sensorMetadata", {})
        if "time" in metadata and not DATE_TIME_STAMP.fullmatch(metadata["time"]):
            problems.append(f"sensorMetadata.time {metadata['time']!r}")
        if "deviceID" in metadata and not URI.fullmatch(metadata["deviceID"]):
            problems.append(f"sensorMetadata.deviceID {metadata['deviceID']!r}")
        for report in element["sensorReport"]:
            if not (isinstance(report.get("type"), str) and isinstance(report.get("value"), int | float)):
                problems.append(f"sensorReport {report!r}")
    return problems


def document_problems(document: dict[str, Any]) -> list[str]:
    """The EPCISDocument envelope's rules, then each event's."""
    problems = []
    context = document.get("@context")
    if not (isinstance(context, list) and context and context[0] == EPCIS_CONTEXT_URL):
        problems.append(f"@context {context!r}")
    if document.get("type") != "EPCISDocument" or document.get("schemaVersion") != "2.0":
        problems.append("type/schemaVersion")
    if not DATE_TIME_STAMP.fullmatch(document.get("creationDate", "")):
        problems.append(f"creationDate {document.get('creationDate')!r}")
    prefixes = {name for entry in context or [] if isinstance(entry, dict) for name in entry}
    for index, event in enumerate(document["epcisBody"]["eventList"]):
        problems += [f"eventList[{index}]: {problem}" for problem in epcis_structure_problems(event, prefixes)]
    return problems


def without_event_id(event: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if name != "eventID"}


# --- the four kinds of event ----------------------------------------------------------------------------


def test_object_event_from_an_rfid_portal() -> None:
    event = make_event(
        3,
        biz_step=events_pb2.BIZ_STEP_DEPARTING,
        disposition=events_pb2.DISPOSITION_IN_TRANSIT,
        objects=[item(GTIN_A, "1002"), item(GTIN_A, "1001")],
    )
    event.event_time.nanos = 250_999_999  # written truncated to the millisecond
    exported = event_to_jsonld(event)
    assert exported == {
        "type": "ObjectEvent",
        "eventID": exported["eventID"],
        "eventTime": "2025-01-31T13:00:03.250+01:00",
        "eventTimeZoneOffset": "+01:00",
        "epcList": [
            f"https://id.gs1.org/01/{GTIN_A}/21/1002",
            f"https://id.gs1.org/01/{GTIN_A}/21/1001",
        ],
        "action": "OBSERVE",
        "bizStep": "departing",
        "disposition": "in_transit",
        "readPoint": {"id": READ_POINT},
        "bizLocation": {"id": DOCK},
        "tallyport:eventId": event.event_id,
        "tallyport:gatewayId": GATEWAY,
        "tallyport:seq": 3,
    }
    assert exported["eventID"] == event_hash_id(without_event_id(exported), EPCIS_NAMESPACES)
    assert epcis_structure_problems(exported, {"tallyport"}) == []


def test_aggregation_event_of_a_pallet() -> None:
    pallet = events_pb2.IdentifiedObject(
        id=f"https://id.gs1.org/00/{sscc('10614141123456789')}", sscc=sscc("10614141123456789")
    )
    event = make_event(
        4,
        event_type=events_pb2.EVENT_TYPE_AGGREGATION,
        action=events_pb2.ACTION_ADD,
        biz_step=events_pb2.BIZ_STEP_PACKING,
        parent=pallet,
        objects=[item(GTIN_A, "1"), item(GTIN_A, "2")],
    )
    exported = event_to_jsonld(event)
    assert exported["type"] == "AggregationEvent"
    assert exported["parentID"] == pallet.id
    assert exported["childEPCs"] == [f"https://id.gs1.org/01/{GTIN_A}/21/1", f"https://id.gs1.org/01/{GTIN_A}/21/2"]
    assert (exported["action"], exported["bizStep"]) == ("ADD", "packing")
    assert "epcList" not in exported
    assert "disposition" not in exported  # unspecified disposition is left out, not "unspecified"
    assert list(exported)[:4] == ["type", "eventID", "eventTime", "eventTimeZoneOffset"]
    assert exported["eventID"] == event_hash_id(without_event_id(exported), EPCIS_NAMESPACES)
    assert epcis_structure_problems(exported, {"tallyport"}) == []


def test_aggregation_delete_without_parent_leaves_parent_id_out() -> None:
    event = make_event(
        5, event_type=events_pb2.EVENT_TYPE_AGGREGATION, action=events_pb2.ACTION_DELETE, objects=[item(GTIN_A, "1")]
    )
    exported = event_to_jsonld(event)
    assert "parentID" not in exported
    assert epcis_structure_problems(exported, {"tallyport"}) == []


def test_quantity_event_from_a_barcode_scan() -> None:
    gtin_b = gtin("0950110153001")
    event = make_event(
        6,
        biz_step=events_pb2.BIZ_STEP_RECEIVING,
        action=events_pb2.ACTION_ADD,
        quantities=[
            events_pb2.QuantityElement(gtin=GTIN_A, quantity=12, batch="LOT 7/A"),
            events_pb2.QuantityElement(gtin=gtin_b, quantity=2.5, uom="KGM"),
        ],
    )
    exported = event_to_jsonld(event)
    assert "epcList" not in exported
    assert exported["quantityList"] == [
        {"epcClass": f"https://id.gs1.org/01/{GTIN_A}/10/LOT%207%2FA", "quantity": 12},
        {"epcClass": f"https://id.gs1.org/01/{gtin_b}", "quantity": 2.5, "uom": "KGM"},
    ]
    assert isinstance(exported["quantityList"][0]["quantity"], int)  # a count, not 12.0
    assert epcis_structure_problems(exported, {"tallyport"}) == []


def test_sensor_event_from_a_climate_probe() -> None:
    event = make_event(7, biz_step=events_pb2.BIZ_STEP_SENSOR_REPORTING, objects=[], quantities=[])
    reading_time = Timestamp(seconds=event.event_time.seconds, nanos=500_000_000)
    event.sensor_reports.extend(
        [
            events_pb2.SensorReport(type="Temperature", value=4.5, uom="CEL", device_id="probe-1", time=reading_time),
            events_pb2.SensorReport(
                type="RelativeHumidity", value=61.0, uom="P1", device_id="probe-1", time=reading_time
            ),
            events_pb2.SensorReport(type="Temperature", value=-18.25, uom="CEL", device_id="urn:epc:id:giai:4000001.9"),
        ]
    )
    event.event_class = events_pb2.EVENT_CLASS_SENSOR
    exported = event_to_jsonld(event)
    assert exported["epcList"] == []  # the schema wants epcList or quantityList on every ObjectEvent
    assert exported["bizStep"] == "sensor_reporting"
    assert exported["sensorElementList"] == [
        {
            "sensorMetadata": {
                "time": "2025-01-31T13:00:07.500+01:00",
                "deviceID": f"urn:tallyport:device:{GATEWAY}:probe-1",
            },
            "sensorReport": [
                {"type": "Temperature", "value": 4.5, "uom": "CEL"},
                {"type": "RelativeHumidity", "value": 61.0, "uom": "P1"},
            ],
        },
        {
            "sensorMetadata": {"deviceID": "urn:epc:id:giai:4000001.9"},
            "sensorReport": [{"type": "Temperature", "value": -18.25, "uom": "CEL"}],
        },
    ]
    assert exported["eventID"] == event_hash_id(without_event_id(exported), EPCIS_NAMESPACES)
    assert epcis_structure_problems(exported, {"tallyport"}) == []


def test_event_id_differs_for_two_reads_alike_but_for_their_tallyport_event_id() -> None:
    first = make_event(1, time_s=1_738_324_800, objects=[item(GTIN_A, "1")])
    second = make_event(2, time_s=1_738_324_800, objects=[item(GTIN_A, "1")])
    second.seq = 1
    assert event_to_jsonld(first)["eventID"] != event_to_jsonld(second)["eventID"]
    assert event_to_jsonld(first)["eventID"] == event_to_jsonld(first)["eventID"]


def test_negative_and_half_hour_offsets() -> None:
    assert format_epcis_time(1_738_324_800, 0, -360) == "2025-01-31T06:00:00.000-06:00"
    assert format_epcis_time(1_738_324_800, 1_000_000, 330) == "2025-01-31T17:30:00.001+05:30"
    assert format_epcis_time(1_738_324_800, 999_999_999) == "2025-01-31T12:00:00.999Z"
    event = make_event(1)
    event.event_time_offset_minutes = -210
    exported = event_to_jsonld(event)
    assert (exported["eventTime"], exported["eventTimeZoneOffset"]) == ("2025-01-31T08:30:01.000-03:30", "-03:30")


def test_document_envelope() -> None:
    events = [event_to_jsonld(make_event(seq)) for seq in (1, 2)]
    document = epcis_document(events, creation_time_us=1_738_324_800_123_456)
    assert document["@context"] == [EPCIS_CONTEXT_URL, {"tallyport": TALLYPORT_NAMESPACE}]
    assert document["type"] == "EPCISDocument"
    assert document["schemaVersion"] == "2.0"
    assert document["creationDate"] == "2025-01-31T12:00:00.123Z"
    assert document["epcisBody"] == {"eventList": events}
    assert document_problems(json.loads(json.dumps(document))) == []
