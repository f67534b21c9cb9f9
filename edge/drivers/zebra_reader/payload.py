"""Pure codec for Zebra IoT Connector MQTT payloads (FX7500, FX9600, ATR7000, FXR90): bytes → reads, never raises.

A payload is one event object, or a JSON array of them when the reader batches reports. Tag data events
have ``type`` ``SIMPLE`` or ``CUSTOM`` and a ``data`` object::

    {"type": "SIMPLE", "timestamp": "2024-05-27T14:32:01.123+0000",
     "data": {"eventNum": 231, "format": "epc", "idHex": "3074257BF7194E4000001A85",
              "antenna": 2, "peakRssi": -55, "reads": 3}}

``peakRssi`` is whole dBm, ``reads`` the seen count since the previous report. GPI edges (photo-eyes) arrive
as ``{"type": "GPI", "pin": 1, "state": "HIGH"}``; the pin and state are also accepted inside ``data``.
Other event types (heartbeats, management events) are counted in ``ignored`` and produce nothing.
Timestamps carry ``+0000``, ``Z`` or ``+00:00``; a missing one means "now" (the receive time passed in).
Rejects name the item index (0-based, ``item 0`` for a single object) and the field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from edge.drivers.json_payload import (
    ITEMS_PER_PAYLOAD_MAX,
    PAYLOAD_BYTES_MAX,
    Decoded,
    FieldError,
    hex_id,
    load_json_items,
    optional_number,
    payload_sha256,
    require_int,
    require_object,
    require_text,
    show,
    timestamp_or,
)
from edge.pipeline.reads import GpiEvent, TagRead

__all__ = ["ZebraItem", "decode_zebra_payload"]

ZebraItem = TagRead | GpiEvent
TAG_DATA_TYPES = frozenset({"SIMPLE", "CUSTOM"})
# Zebra fixed readers have at most 8 antenna ports and 4 GPIs; the caps are generous, they only stop nonsense.
ANTENNA_PORT_MAX = 64
GPI_PIN_MAX = 64
READ_COUNT_MAX = 1_000_000
EVENT_TYPE_CHARS_MAX = 40


def decode_zebra_payload(
    payload: bytes,
    *,
    reader: str,
    received_at: datetime,
    payload_bytes_max: int = PAYLOAD_BYTES_MAX,
    items_max: int = ITEMS_PER_PAYLOAD_MAX,
) -> Decoded[ZebraItem]:
    """Decode one MQTT payload from the reader named ``reader``; ``received_at`` stands in for a missing time."""
    loaded = load_json_items(payload, payload_bytes_max=payload_bytes_max, items_max=items_max)
    digest = payload_sha256(payload)
    items: list[ZebraItem] = []
    rejects: list[str] = []
    ignored: Counter[str] = Counter()
    for index, event in loaded.elements:
        if isinstance(event, str):
            rejects.append(f"item {index}: {event}")
            continue
        try:
            event_type = require_text(event.get("type"), "type")
            if event_type.upper() in TAG_DATA_TYPES:
                items.append(_tag_read(event, reader, received_at, digest))
            elif event_type.upper() == "GPI":
                items.append(_gpi_event(event, reader, received_at))
            else:
                ignored[event_type[:EVENT_TYPE_CHARS_MAX]] += 1
        except FieldError as exc:
            rejects.append(f"item {index}: {exc}")
    return Decoded(tuple(items), (*rejects, *loaded.rejects), dict(ignored))


def _tag_read(event: Mapping[str, object], reader: str, received_at: datetime, digest: str) -> TagRead:
    data = require_object(event.get("data"), "data")
    read_format = data.get("format")
    # The id in idHex is the EPC unless the operating mode reports another memory bank: refuse to pass a TID
    # off as an EPC.
    if read_format is not None and require_text(read_format, "data.format").lower() != "epc":
        raise FieldError(f"data.format {show(read_format)} is not 'epc'")
    if "antenna" not in data:
        raise FieldError("no data.antenna (add ANTENNA to the operating mode's tag metadata)")
    reads = data.get("reads")
    return TagRead(
        reader=reader,
        antenna=require_int(data["antenna"], "data.antenna", minimum=1, maximum=ANTENNA_PORT_MAX),
        epc_hex=hex_id(data.get("idHex"), "data.idHex"),
        seen_at=timestamp_or(event.get("timestamp"), "timestamp", received_at),
        peak_rssi_dbm=optional_number(data, "peakRssi", "data.peakRssi"),
        read_count=1 if reads is None else require_int(reads, "data.reads", minimum=1, maximum=READ_COUNT_MAX),
        raw_sha256=digest,
    )


def _gpi_event(event: Mapping[str, object], reader: str, received_at: datetime) -> GpiEvent:
    # Seen both flat ({"type": "GPI", "pin": 1, ...}) and with the edge inside "data"; the flat form wins.
    data = event.get("data")
    fields: Mapping[str, object] = event if "pin" in event or not isinstance(data, dict) else data
    where = "" if fields is event else "data."
    return GpiEvent(
        reader=reader,
        pin=require_int(fields.get("pin"), f"{where}pin", minimum=0, maximum=GPI_PIN_MAX),
        state=_gpi_state(fields.get("state"), f"{where}state"),
        seen_at=timestamp_or(event.get("timestamp"), "timestamp", received_at),
    )


def _gpi_state(value: object, where: str) -> Literal["high", "low"]:
    state = require_text(value, where).lower()
    if state == "high":
        return "high"
    if state == "low":
        return "low"
    raise FieldError(f"{where} {show(value)} is not HIGH or LOW")
