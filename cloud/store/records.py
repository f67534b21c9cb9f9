"""The rows the store keeps, as plain frozen dataclasses shared by every store implementation.

Times are integer microseconds since the epoch (UTC); enums are their protobuf numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "POSITION_COLUMNS",
    "EventObjectKey",
    "EventQuery",
    "GapRecord",
    "GatewayRecord",
    "MeasureDelta",
    "OnHandDelta",
    "OnHandRecord",
    "PositionRecord",
    "QuarantineRecord",
    "SeqRanges",
    "StoredEvent",
    "StreamState",
    "position_from_row",
    "seq_ranges_from_text",
    "seq_ranges_to_text",
]

# Inclusive (first_seq, last_seq) pairs, ascending and disjoint.
SeqRanges = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class StreamState:
    """Delivery state of one (gateway, outbox): the table `gateway_streams`."""

    gateway_id: str
    outbox_id: str
    committed_through_seq: int  # highest contiguous seq handled (stored, duplicate or quarantined)
    agent_version: str
    first_contact_us: int
    last_contact_us: int
    events_stored: int = 0
    duplicates: int = 0
    rejects: int = 0
    batches: int = 0
    # Cloud time minus gateway time in ms, as last measured on this outbox's stream; None: never measured.
    clock_offset_ms: int | None = None
    # Seq ranges committed above committed_through_seq, ascending, neither touching it nor each other
    # (`cloud.ingest.commit`); kept in the row as text (`seq_ranges_to_text`).
    committed_ranges: SeqRanges = ()


@dataclass(frozen=True, slots=True)
class GapRecord:
    """Seqs `first_seq..last_seq` (inclusive) that will never arrive, and why."""

    gateway_id: str
    outbox_id: str
    first_seq: int
    last_seq: int
    reason: str
    recorded_at_us: int


@dataclass(frozen=True, slots=True)
class EventObjectKey:
    """One (object id, GTIN) an event mentions, for the object and GTIN filters of ListEvents."""

    object_id: str
    gtin: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A valid event as stored: filter columns plus the serialized `events_pb2.Event`."""

    event_id: str
    gateway_id: str
    outbox_id: str
    seq: int
    event_time_us: int
    biz_location: str
    biz_step: int
    received_at_us: int
    payload: bytes
    mentions: tuple[EventObjectKey, ...] = ()


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """An event the cloud rejected, kept with its reason; `quarantine_id` is 0 until stored."""

    gateway_id: str
    outbox_id: str
    seq: int
    event_id: str
    reason: str
    received_at_us: int
    payload: bytes
    quarantine_id: int = 0


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """Where one serialised object is, by the newest event that mentioned it."""

    object_id: str
    epc_uri: str
    epc_hex: str
    gtin: str
    sscc: str
    biz_location: str
    read_point_id: str
    biz_step: int
    disposition: int
    in_transit: bool
    present: bool  # False after an OBJECT event with action DELETE
    event_time_us: int
    event_id: str
    gateway_id: str
    seq: int


# The positions table's columns in PositionRecord's field order: SELECT them, then `position_from_row`.
POSITION_COLUMNS = (
    "object_id, epc_uri, epc_hex, gtin, sscc, biz_location, read_point_id, biz_step, disposition, "
    "in_transit, present, event_time_us, event_id, gateway_id, seq"
)


def position_from_row(row: Sequence[Any]) -> PositionRecord:
    """A row of POSITION_COLUMNS as a PositionRecord (SQLite keeps the flags as 0/1)."""
    return PositionRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        int(row[7]),
        int(row[8]),
        bool(row[9]),
        bool(row[10]),
        int(row[11]),
        row[12],
        row[13],
        int(row[14]),
    )


@dataclass(frozen=True, slots=True)
class OnHandDelta:
    """A change to the on-hand row of (gtin, biz_location)."""

    gtin: str
    biz_location: str
    serialized_count: int = 0
    class_quantity: float = 0.0


@dataclass(frozen=True, slots=True)
class MeasureDelta:
    """A change to a measured quantity (a uom such as KGM) of (gtin, biz_location); not a count."""

    gtin: str
    biz_location: str
    uom: str
    quantity: float


@dataclass(frozen=True, slots=True)
class OnHandRecord:
    """On-hand of one GTIN at one location."""

    gtin: str
    biz_location: str
    serialized_count: int
    class_quantity: float

    @property
    def quantity(self) -> float:
        return self.serialized_count + self.class_quantity


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    """A (gateway, outbox) delivery state with its gaps, newest gap last."""

    state: StreamState
    gaps: tuple[GapRecord, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters and a keyset cursor for listing events newest first by (event_time_us, event_id)."""

    limit: int
    gateway_id: str = ""
    biz_location: str = ""
    gtin: str = ""
    object_id: str = ""
    biz_step: int = 0
    since_us: int | None = None  # event_time >= since
    until_us: int | None = None  # event_time < until
    before: tuple[int, str] | None = None  # (event_time_us, event_id) of the last row already returned


def seq_ranges_to_text(ranges: SeqRanges) -> str:
    """The column form of committed ranges: "first-last,first-last" ("" for none)."""
    return ",".join(f"{first}-{last}" for first, last in ranges)


def seq_ranges_from_text(text: str | None) -> SeqRanges:
    """Committed ranges from their column form; NULL or "" is none."""
    if not text:
        return ()
    ranges = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        ranges.append((int(first), int(last)))
    return tuple(ranges)
