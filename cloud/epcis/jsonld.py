"""Stored events → EPCIS 2.0 JSON-LD: one event dict per `events_pb2.Event`, and the EPCISDocument around them.

The mapping, field by field (CBV values as bare strings, as the EPCIS JSON-LD context expects):

    type                      OBJECT → "ObjectEvent", AGGREGATION → "AggregationEvent"
    event_time + offset       "eventTime": "2025-01-31T13:00:01.250+01:00" (milliseconds; the zone of the
                              read point), "eventTimeZoneOffset": "+01:00"
    objects                   ObjectEvent "epcList" / AggregationEvent "childEPCs": each object's canonical
                              id (a GS1 Digital Link URI when the edge knew the GS1 key)
    parent                    AggregationEvent "parentID"
    quantities                "quantityList" / "childQuantityList": {"epcClass": https://id.gs1.org/01/{gtin}
                              [/10/{batch}], "quantity", "uom" (only when it is not a count)}
    action, biz_step,         "action": "OBSERVE", "bizStep": "receiving", "disposition": "in_transit"
    disposition
    read_point.id,            "readPoint": {"id": …}, "bizLocation": {"id": …}
    biz_location
    sensor_reports            "sensorElementList": one sensorElement per (device, time), with
                              "sensorMetadata": {"time", "deviceID"} and "sensorReport":
                              [{"type": "Temperature", "value": 4.5, "uom": "CEL"}, …]
    event_id, gateway_id, seq extensions "tallyport:eventId", "tallyport:gatewayId", "tallyport:seq"
                              (prefix "tallyport" = `urn:tallyport:epcis:` in the document's @context)

An ObjectEvent with neither objects nor quantities (a climate report) carries an empty "epcList": the
EPCIS JSON Schema requires epcList or quantityList on every ObjectEvent.

"eventID" is the event's CBV 2.0 EPCIS Event Hash ID, computed over the event dict as exported (the
hash leaves eventID itself out, and includes the extensions, so two reads alike in every field still get
different IDs through tallyport:eventId). Times are written with millisecond precision so every
implementation of the hash reads the same instant; the microseconds stay in the stored event.
A device id that is not a URI becomes `urn:tallyport:device:{gateway_id}:{device_id}` (percent-encoded),
since EPCIS deviceID is a URI and a device name is only unique within its gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from google.protobuf.timestamp_pb2 import Timestamp
from tallyport.v1 import events_pb2

from cloud.epcis.event_hash import context_namespaces, event_hash_id
from cloud.errors import ValidationError

__all__ = [
    "EPCIS_CONTEXT_URL",
    "EPCIS_DOCUMENT_CONTEXT",
    "EPCIS_NAMESPACES",
    "TALLYPORT_NAMESPACE",
    "epcis_document",
    "event_to_jsonld",
    "format_epcis_time",
]

EPCIS_CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
TALLYPORT_PREFIX = "tallyport"
# A URN namespace of our own, like the urn:tallyport:loc:… ids; it ends with ':' so JSON-LD can use it
# as a prefix (tallyport:eventId expands to urn:tallyport:epcis:eventId).
TALLYPORT_NAMESPACE = "urn:tallyport:epcis:"
EPCIS_DOCUMENT_CONTEXT: tuple[str | Mapping[str, str], ...] = (
    EPCIS_CONTEXT_URL,
    {TALLYPORT_PREFIX: TALLYPORT_NAMESPACE},
)
EPCIS_NAMESPACES: Mapping[str, str] = context_namespaces(list(EPCIS_DOCUMENT_CONTEXT))
GS1_DIGITAL_LINK = "https://id.gs1.org"

_EVENT_TYPES = {
    events_pb2.EVENT_TYPE_OBJECT: "ObjectEvent",
    events_pb2.EVENT_TYPE_AGGREGATION: "AggregationEvent",
}
_ACTIONS = {
    events_pb2.ACTION_ADD: "ADD",
    events_pb2.ACTION_OBSERVE: "OBSERVE",
    events_pb2.ACTION_DELETE: "DELETE",
}


def format_epcis_time(seconds: int, nanos: int, offset_minutes: int = 0) -> str:
    """An xsd:dateTimeStamp with milliseconds (truncated) in the given zone: '2025-01-31T13:00:00.000+01:00'."""
    zone = UTC if offset_minutes == 0 else timezone(timedelta(minutes=offset_minutes))
    moment = datetime.fromtimestamp(seconds, tz=UTC).astimezone(zone) + timedelta(milliseconds=nanos // 1_000_000)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return text + (_offset_text(offset_minutes) if offset_minutes else "Z")


def _offset_text(offset_minutes: int) -> str:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def event_to_jsonld(event: events_pb2.Event) -> dict[str, Any]:
    """The EPCIS 2.0 JSON-LD event of a stored event, with its EPCIS Event Hash ID as eventID.

    Raises ValidationError for an event the export cannot express (an unknown type or action).
    """
    event_type = _EVENT_TYPES.get(event.type)
    action = _ACTIONS.get(event.action)
    if event_type is None or action is None:
        raise ValidationError(f"event {event.event_id!r}: type {event.type} / action {event.action} has no EPCIS form")
    body: dict[str, Any] = {
        "type": event_type,
        "eventTime": _time(event.event_time, event.event_time_offset_minutes),
        "eventTimeZoneOffset": _offset_text(event.event_time_offset_minutes),
    }
    body.update(_what(event, event_type))
    body["action"] = action
    body.update(_why(event))
    if event.read_point.id:
        body["readPoint"] = {"id": event.read_point.id}
    if event.biz_location:
        body["bizLocation"] = {"id": event.biz_location}
    if event.sensor_reports:
        body["sensorElementList"] = _sensor_elements(event)
    body[f"{TALLYPORT_PREFIX}:eventId"] = event.event_id
    body[f"{TALLYPORT_PREFIX}:gatewayId"] = event.gateway_id
    body[f"{TALLYPORT_PREFIX}:seq"] = event.seq
    return {"type": event_type, "eventID": event_hash_id(body, EPCIS_NAMESPACES), **body}


def epcis_document(events: Sequence[Mapping[str, Any]], creation_time_us: int) -> dict[str, Any]:
    """An EPCISDocument (schemaVersion 2.0) holding `events`, created at `creation_time_us` (UTC)."""
    seconds, micros = divmod(creation_time_us, 1_000_000)
    return {
        "@context": [dict(entry) if isinstance(entry, Mapping) else entry for entry in EPCIS_DOCUMENT_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": format_epcis_time(seconds, micros * 1000),
        "epcisBody": {"eventList": list(events)},
    }


def _time(timestamp: Timestamp, offset_minutes: int) -> str:
    return format_epcis_time(timestamp.seconds, timestamp.nanos, offset_minutes)


def _what(event: events_pb2.Event, event_type: str) -> dict[str, Any]:
    epcs = [identified.id for identified in event.objects]
    quantities = [_quantity(element) for element in event.quantities]
    if event_type == "AggregationEvent":
        what: dict[str, Any] = {}
        if event.HasField("parent") and event.parent.id:
            what["parentID"] = event.parent.id
        if epcs:
            what["childEPCs"] = epcs
        if quantities:
            what["childQuantityList"] = quantities
        return what
    if quantities and not epcs:
        return {"quantityList": quantities}
    # The schema wants epcList or quantityList on every ObjectEvent: a sensor report has an empty epcList.
    return {"epcList": epcs, **({"quantityList": quantities} if quantities else {})}


def _quantity(element: events_pb2.QuantityElement) -> dict[str, Any]:
    epc_class = f"{GS1_DIGITAL_LINK}/01/{element.gtin}"
    if element.batch:
        epc_class += f"/10/{quote(element.batch, safe='')}"
    quantity: float | int = element.quantity
    if not element.uom and element.quantity.is_integer():
        quantity = int(element.quantity)  # a count of trade items reads as one
    entry: dict[str, Any] = {"epcClass": epc_class, "quantity": quantity}
    if element.uom:
        entry["uom"] = element.uom
    return entry


def _why(event: events_pb2.Event) -> dict[str, str]:
    why = {}
    if event.biz_step != events_pb2.BIZ_STEP_UNSPECIFIED:
        why["bizStep"] = events_pb2.BizStep.Name(event.biz_step).removeprefix("BIZ_STEP_").lower()
    if event.disposition != events_pb2.DISPOSITION_UNSPECIFIED:
        why["disposition"] = events_pb2.Disposition.Name(event.disposition).removeprefix("DISPOSITION_").lower()
    return why


def _sensor_elements(event: events_pb2.Event) -> list[dict[str, Any]]:
    """One sensorElement per (device, time), in the order the reports came."""
    elements: dict[tuple[str, int, int], dict[str, Any]] = {}
    for report in event.sensor_reports:
        key = (report.device_id, report.time.seconds, report.time.nanos)
        element = elements.get(key)
        if element is None:
            metadata: dict[str, str] = {}
            if report.HasField("time"):
                metadata["time"] = _time(report.time, event.event_time_offset_minutes)
            if report.device_id:
                metadata["deviceID"] = _device_uri(event.gateway_id, report.device_id)
            element = {"sensorMetadata": metadata, "sensorReport": []} if metadata else {"sensorReport": []}
            elements[key] = element
        entry: dict[str, Any] = {"type": report.type, "value": report.value}
        if report.uom:
            entry["uom"] = report.uom
        element["sensorReport"].append(entry)
    return list(elements.values())


def _device_uri(gateway_id: str, device_id: str) -> str:
    scheme, separator, rest = device_id.partition(":")
    if separator and rest and scheme.isascii() and scheme.replace("-", "").replace(".", "").isalnum():
        return device_id  # already a URI (urn:epc:id:giai:…, https://…)
    return f"urn:tallyport:device:{quote(gateway_id, safe='')}:{quote(device_id, safe='')}"
