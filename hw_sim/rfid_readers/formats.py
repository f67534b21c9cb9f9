"""Reader wire formats: tag reads and GPI edges as a Zebra IoT Connector or an Impinj R700 would send them.

The simulators take any objects with the attributes of the edge's ``TagRead`` / ``GpiEvent`` (hw_sim does
not import the edge; the portal simulator's reads and the edge's types both fit these protocols).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "EpcEncoding",
    "GpiEventLike",
    "ReaderItem",
    "TagReadLike",
    "impinj_event",
    "impinj_timestamp",
    "in_time_order",
    "json_bytes",
    "zebra_event",
    "zebra_timestamp",
]

EpcEncoding = Literal["both", "hex", "base64"]


@runtime_checkable
class TagReadLike(Protocol):
    """One tag report: the attributes of ``edge.pipeline.reads.TagRead`` the simulators use. A ``read_count``
    attribute is used when present (the portal simulator's reads have none: each is one read)."""

    @property
    def reader(self) -> str: ...
    @property
    def antenna(self) -> int: ...
    @property
    def epc_hex(self) -> str: ...
    @property
    def seen_at(self) -> datetime: ...
    @property
    def peak_rssi_dbm(self) -> float | None: ...


@runtime_checkable
class GpiEventLike(Protocol):
    """One GPI edge: the attributes of ``edge.pipeline.reads.GpiEvent``."""

    @property
    def reader(self) -> str: ...
    @property
    def pin(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def seen_at(self) -> datetime: ...


ReaderItem = TagReadLike | GpiEventLike


def in_time_order(items: Iterable[ReaderItem]) -> list[ReaderItem]:
    """The items sorted by ``seen_at`` (stable: equal times keep their order)."""
    return sorted(items, key=lambda item: item.seen_at)


def zebra_timestamp(moment: datetime) -> str:
    """Zebra's form: UTC, milliseconds, offset written ``+0000`` (no colon)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def impinj_timestamp(moment: datetime) -> str:
    """Impinj's form: UTC with ``Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}Z"


def zebra_event(item: ReaderItem, *, event_number: int) -> dict[str, Any]:
    """A Zebra IoT Connector event: SIMPLE tag data, or a GPI edge."""
    if isinstance(item, TagReadLike):
        data: dict[str, Any] = {
            "eventNum": event_number,
            "format": "epc",
            "idHex": item.epc_hex.upper(),
            "antenna": item.antenna,
            "reads": int(getattr(item, "read_count", 1)),
        }
        if item.peak_rssi_dbm is not None:
            data["peakRssi"] = round(item.peak_rssi_dbm)  # Zebra reports whole dBm
        return {"type": "SIMPLE", "timestamp": zebra_timestamp(item.seen_at), "data": data}
    return {"type": "GPI", "timestamp": zebra_timestamp(item.seen_at), "pin": item.pin, "state": item.state.upper()}


def impinj_event(item: ReaderItem, *, hostname: str, epc_encoding: EpcEncoding = "both") -> dict[str, Any]:
    """An Impinj IoT Device Interface event: ``tagInventory`` or ``gpiTransition``."""
    timestamp = impinj_timestamp(item.seen_at)
    if isinstance(item, TagReadLike):
        tag: dict[str, Any] = {"antennaPort": item.antenna, "lastSeenTime": timestamp}
        if epc_encoding in ("both", "base64"):
            tag["epc"] = base64.b64encode(bytes.fromhex(item.epc_hex)).decode("ascii")
        if epc_encoding in ("both", "hex"):
            tag["epcHex"] = item.epc_hex.upper()
        if item.peak_rssi_dbm is not None:
            tag["peakRssiCdbm"] = round(item.peak_rssi_dbm * 100)  # centi-dBm
        return {"timestamp": timestamp, "hostname": hostname, "eventType": "tagInventory", "tagInventoryEvent": tag}
    transition = "low-to-high" if item.state.lower() == "high" else "high-to-low"
    return {
        "timestamp": timestamp,
        "hostname": hostname,
        "eventType": "gpiTransition",
        "gpiTransitionEvent": {"gpi": item.pin, "transition": transition},
    }


def json_bytes(document: dict[str, Any] | Sequence[dict[str, Any]]) -> bytes:
    """Compact JSON, as readers send it."""
    return json.dumps(document, separators=(",", ":")).encode()
