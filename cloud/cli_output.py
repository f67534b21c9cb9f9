"""How `tallyport-cloud` prints answers: aligned text tables, or one JSON object per line.

Tables are plain columns separated by two spaces, left-aligned, no trailing spaces, so they
read well and still `grep`/`awk` cleanly. JSON lines use the protobuf JSON mapping with the
.proto field names (`MessageToDict(..., preserving_proto_field_name=True)`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2

__all__ = [
    "ALARM_HEADERS",
    "alarm_rows",
    "enum_label",
    "event_rows",
    "format_clock_offset",
    "format_quantity",
    "format_time",
    "gateway_rows",
    "json_lines",
    "on_hand_rows",
    "position_lines",
    "quarantine_rows",
    "table",
    "where_now",
]

COLUMN_GAP = "  "


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, header first."""
    body = [list(row) for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *body, strict=False)]
    return [
        COLUMN_GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *body]
    ]


def json_lines(messages: Iterable[Message]) -> list[str]:
    """One compact JSON object per message."""
    return [
        json.dumps(MessageToDict(message, preserving_proto_field_name=True), separators=(",", ":"))
        for message in messages
    ]


def format_quantity(quantity: float) -> str:
    """12.0 -> '12', 2.5 -> '2.5'."""
    return str(int(quantity)) if quantity.is_integer() else f"{quantity:.6g}"


def format_time(timestamp: Timestamp) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000Z; '-' when unset."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return "-"
    moment = datetime.fromtimestamp(timestamp.seconds + timestamp.nanos / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def enum_label(enum: object, value: int, prefix: str) -> str:
    """The EPCIS bare word of an enum value: BIZ_STEP_CYCLE_COUNTING -> 'cycle_counting'."""
    try:
        name = enum.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return str(value)
    return "-" if name.endswith("_UNSPECIFIED") else name.removeprefix(prefix).lower()


def on_hand_rows(rows: Iterable[inventory_pb2.OnHand]) -> list[list[str]]:
    """GTIN, location, quantity."""
    return [[row.gtin, row.biz_location, format_quantity(row.quantity)] for row in rows]


def where_now(position: inventory_pb2.Position) -> str:
    """Where the object is now, in words: at a place, in transit from one, or gone from the system."""
    last_seen = position.last_seen_biz_location or "an unknown location"
    if position.present:
        return f"at {last_seen}"
    if position.in_transit:
        return f"in transit from {last_seen}"
    return f"gone (taken out by action DELETE), last seen at {last_seen}"


def position_lines(position: inventory_pb2.Position) -> list[str]:
    """A two-column `field  value` block for one position: where it is now, then its last sighting."""
    rows = [
        ["id", position.id],
        ["epc_uri", position.epc_uri or "-"],
        ["gtin", position.gtin or "-"],
        ["sscc", position.sscc or "-"],
        ["now", where_now(position)],
        ["present", "yes" if position.present else "no"],
        ["in_transit", "yes" if position.in_transit else "no"],
        ["last_seen_biz_location", position.last_seen_biz_location or "-"],
        ["read_point", position.read_point_id or "-"],
        ["biz_step", enum_label(events_pb2.BizStep, position.biz_step, "BIZ_STEP_")],
        ["disposition", enum_label(events_pb2.Disposition, position.disposition, "DISPOSITION_")],
        ["event_time", format_time(position.event_time)],
        ["event_id", position.event_id],
        ["gateway", position.gateway_id],
    ]
    return table(["FIELD", "VALUE"], rows)[1:]


def event_rows(events: Iterable[events_pb2.Event]) -> list[list[str]]:
    """Time, gateway, seq, step, action, location, what was seen, event id."""
    return [
        [
            format_time(event.event_time),
            event.gateway_id,
            str(event.seq),
            enum_label(events_pb2.BizStep, event.biz_step, "BIZ_STEP_"),
            enum_label(events_pb2.Action, event.action, "ACTION_"),
            event.biz_location or "-",
            _seen(event),
            event.event_id,
        ]
        for event in events
    ]


def _seen(event: events_pb2.Event) -> str:
    parts = []
    if event.objects:
        parts.append(f"{len(event.objects)} obj")
    if event.quantities:
        parts.append(f"{len(event.quantities)} qty")
    if event.sensor_reports:
        parts.append(f"{len(event.sensor_reports)} sensor")
    if event.HasField("parent") and event.parent.id:
        parts.append("parent")
    return ",".join(parts) or "-"


def quarantine_rows(entries: Iterable[inventory_pb2.QuarantinedEvent]) -> list[list[str]]:
    """Received, gateway, seq, event id, reason."""
    return [
        [
            format_time(entry.received_at),
            entry.gateway_id,
            str(entry.seq),
            entry.event_id or "-",
            entry.reason,
        ]
        for entry in entries
    ]


def format_clock_offset(offset_ms: int) -> str:
    """Cloud time minus gateway time, signed seconds: "+3600.012s" means the gateway is 1 h behind."""
    sign = "-" if offset_ms < 0 else "+"
    seconds, millis = divmod(abs(offset_ms), 1000)
    return f"{sign}{seconds}.{millis:03d}s"


def gateway_rows(gateways: Iterable[inventory_pb2.GatewayState]) -> list[list[str]]:
    """Gateway, outbox, committed seq, last contact, events stored, clock offset, gaps (first-last)."""
    return [
        [
            state.gateway_id,
            state.outbox_id,
            str(state.committed_through_seq),
            format_time(state.last_contact),
            str(state.events_stored),
            format_clock_offset(state.clock_offset_ms) if state.HasField("clock_offset_ms") else "-",
            ",".join(f"{gap.first_seq}-{gap.last_seq}" for gap in state.gaps) or "-",
        ]
        for state in gateways
    ]


ALARM_HEADERS = ("GATEWAY", "ALARM", "SEVERITY", "STATE", "RAISED_AT", "MESSAGE")


def alarm_rows(gateways: Iterable[inventory_pb2.GatewayState]) -> list[list[str]]:
    """Gateway, alarm code, severity, active/cleared, raised at, message: once per gateway, active first."""
    rows: list[list[str]] = []
    seen: set[str] = set()
    for state in gateways:
        if state.gateway_id in seen:  # every outbox row of a gateway carries the same alarms
            continue
        seen.add(state.gateway_id)
        rows.extend(
            [
                state.gateway_id,
                alarm.code,
                enum_label(ingest_pb2.AlarmSeverity, alarm.severity, "ALARM_SEVERITY_"),
                "active" if alarm.active else "cleared",
                format_time(alarm.raised_at),
                alarm.message,
            ]
            for alarm in state.alarms
        )
    return rows
