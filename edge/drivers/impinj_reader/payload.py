"""Pure codec for Impinj IoT Device Interface events (R700, R720): bytes → reads, never raises.

The same event objects arrive one per line on the HTTP stream (NDJSON), one per message over MQTT, and as
JSON arrays in webhook bodies; this codec takes any of them::

    {"timestamp": "2023-05-09T15:04:12.310Z", "hostname": "impinj-14-1f-23", "eventType": "tagInventory",
     "tagInventoryEvent": {"epc": "MHQle/cZTkAAABqF", "epcHex": "3074257BF7194E4000001A85",
                           "antennaPort": 2, "peakRssiCdbm": -6150,
                           "lastSeenTime": "2023-05-09T15:04:12.305Z"}}

``epcHex`` is used when present, otherwise the base64 ``epc`` is converted (presets may disable either);
``peakRssiCdbm`` is centi-dBm (−6150 → −61.5 dBm); the read time is ``lastSeenTime``, else the event's
``timestamp``, else the receive time passed in. ``gpiTransition`` events (``{"gpi": 1, "transition":
"low-to-high"}``) become GPI edges. Every other event type (``inventoryStatus``, ``antennaConnected``,
``diagnostic``, ``overflow``, …) is counted in ``ignored``. An event without ``eventType`` is recognised
by its ``…Event`` member. Rejects name the item index (0-based) and the field.
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
    base64_to_hex,
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

__all__ = ["ImpinjItem", "decode_impinj_payload"]

ImpinjItem = TagRead | GpiEvent
ANTENNA_PORT_MAX = 64
GPI_PIN_MAX = 64
EVENT_TYPE_CHARS_MAX = 40
_EVENT_MEMBER_SUFFIX = "Event"


def decode_impinj_payload(
    payload: bytes,
    *,
    reader: str,
    received_at: datetime,
    payload_bytes_max: int = PAYLOAD_BYTES_MAX,
    items_max: int = ITEMS_PER_PAYLOAD_MAX,
) -> Decoded[ImpinjItem]:
    """Decode one stream line, MQTT message or webhook body from the reader named ``reader``."""
    loaded = load_json_items(payload, payload_bytes_max=payload_bytes_max, items_max=items_max)
    digest = payload_sha256(payload)
    items: list[ImpinjItem] = []
    rejects: list[str] = []
    ignored: Counter[str] = Counter()
    for index, event in loaded.elements:
        if isinstance(event, str):
            rejects.append(f"item {index}: {event}")
            continue
        try:
            event_type = _event_type(event)
            if event_type == "tagInventory":
                items.append(_tag_read(event, reader, received_at, digest))
            elif event_type == "gpiTransition":
                items.append(_gpi_event(event, reader, received_at))
            else:
                ignored[event_type[:EVENT_TYPE_CHARS_MAX]] += 1
        except FieldError as exc:
            rejects.append(f"item {index}: {exc}")
    return Decoded(tuple(items), (*rejects, *loaded.rejects), dict(ignored))


def _event_type(event: Mapping[str, object]) -> str:
    if "eventType" in event:
        return require_text(event["eventType"], "eventType")
    members = [key for key in event if key.endswith(_EVENT_MEMBER_SUFFIX) and isinstance(event[key], dict)]
    if len(members) != 1:
        raise FieldError("no eventType and no single …Event member")
    return members[0][: -len(_EVENT_MEMBER_SUFFIX)]


def _tag_read(event: Mapping[str, object], reader: str, received_at: datetime, digest: str) -> TagRead:
    tag = require_object(event.get("tagInventoryEvent"), "tagInventoryEvent")
    if tag.get("epcHex") is not None:
        epc_hex = hex_id(tag["epcHex"], "tagInventoryEvent.epcHex")
        if tag.get("epc") is not None and base64_to_hex(tag["epc"], "tagInventoryEvent.epc") != epc_hex:
            raise FieldError("tagInventoryEvent.epc and .epcHex name different tags")
    elif tag.get("epc") is not None:
        epc_hex = base64_to_hex(tag["epc"], "tagInventoryEvent.epc")
    else:
        raise FieldError("no tagInventoryEvent.epcHex or .epc (enable one in the preset's eventConfig)")
    if "antennaPort" not in tag:
        raise FieldError("no tagInventoryEvent.antennaPort (enable it; antennaName alone is not enough)")
    rssi_cdbm = optional_number(tag, "peakRssiCdbm", "tagInventoryEvent.peakRssiCdbm")
    seen = tag.get("lastSeenTime")
    seen_at = (
        timestamp_or(seen, "tagInventoryEvent.lastSeenTime", received_at)
        if seen is not None
        else timestamp_or(event.get("timestamp"), "timestamp", received_at)
    )
    return TagRead(
        reader=reader,
        antenna=require_int(tag["antennaPort"], "tagInventoryEvent.antennaPort", minimum=1, maximum=ANTENNA_PORT_MAX),
        epc_hex=epc_hex,
        seen_at=seen_at,
        peak_rssi_dbm=None if rssi_cdbm is None else rssi_cdbm / 100,
        raw_sha256=digest,
    )


def _gpi_event(event: Mapping[str, object], reader: str, received_at: datetime) -> GpiEvent:
    gpi = require_object(event.get("gpiTransitionEvent"), "gpiTransitionEvent")
    return GpiEvent(
        reader=reader,
        pin=require_int(gpi.get("gpi"), "gpiTransitionEvent.gpi", minimum=0, maximum=GPI_PIN_MAX),
        state=_state_after(gpi.get("transition")),
        seen_at=timestamp_or(event.get("timestamp"), "timestamp", received_at),
    )


def _state_after(value: object) -> Literal["high", "low"]:
    transition = require_text(value, "gpiTransitionEvent.transition").lower()
    if transition == "low-to-high":
        return "high"
    if transition == "high-to-low":
        return "low"
    raise FieldError(f"gpiTransitionEvent.transition {show(value)} is not 'low-to-high' or 'high-to-low'")
