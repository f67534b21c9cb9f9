"""How a raw RFID read is written to the outbox's read journal and read back after a restart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from edge.pipeline.reads import GpiEvent, TagRead

RfidItem = TagRead | GpiEvent


@dataclass(frozen=True)
class JournaledRead:
    journal_id: int
    item: RfidItem
    arrival: datetime  # gateway clock when it arrived: replayed so sessions close as they would have


def encode_read(item: RfidItem, arrival: datetime) -> bytes:
    if isinstance(item, TagRead):
        body: dict[str, object] = {
            "kind": "tag",
            "reader": item.reader,
            "antenna": item.antenna,
            "epc_hex": item.epc_hex,
            "seen_at": item.seen_at.isoformat(),
            "peak_rssi_dbm": item.peak_rssi_dbm,
            "read_count": item.read_count,
            "raw_sha256": item.raw_sha256,
        }
    else:
        body = {
            "kind": "gpi",
            "reader": item.reader,
            "pin": item.pin,
            "state": item.state,
            "seen_at": item.seen_at.isoformat(),
        }
    body["arrival"] = arrival.isoformat()
    return json.dumps(body, separators=(",", ":")).encode()


def decode_read(journal_id: int, payload: bytes) -> JournaledRead:
    """The inverse of `encode_read`; the journal only holds what `encode_read` wrote."""
    body = json.loads(payload)
    seen_at = datetime.fromisoformat(body["seen_at"])
    item: RfidItem
    if body["kind"] == "tag":
        item = TagRead(
            reader=body["reader"],
            antenna=int(body["antenna"]),
            epc_hex=body["epc_hex"],
            seen_at=seen_at,
            peak_rssi_dbm=body["peak_rssi_dbm"],
            read_count=int(body["read_count"]),
            raw_sha256=body["raw_sha256"],
        )
    else:
        item = GpiEvent(reader=body["reader"], pin=int(body["pin"]), state=body["state"], seen_at=seen_at)
    return JournaledRead(journal_id, item, datetime.fromisoformat(body["arrival"]))
