"""The gateway's durable outbox (SQLite WAL), its quarantine of rejected reads, and the salvage of a damaged file."""

from edge.outbox.outbox import Durability, Outbox, open_outbox
from edge.outbox.records import DeviceFrame, FrameMarker, OutboxStats, QuarantineRecord, Rejected

__all__ = [
    "DeviceFrame",
    "Durability",
    "FrameMarker",
    "Outbox",
    "OutboxStats",
    "QuarantineRecord",
    "Rejected",
    "open_outbox",
]
