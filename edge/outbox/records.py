"""Plain records the outbox takes and returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rejected:
    """A read that did not become an event: kept in the quarantine with its reason, never dropped."""

    source: str  # the device (or driver) it came from
    reason_code: str  # short stable slug, e.g. "check_digit"
    reason: str  # what was wrong and where, for a person
    raw: bytes
    raw_sha256: str = field(default="")

    def digest(self) -> str:
        return self.raw_sha256 or hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class FrameMarker:
    """The frame behind a commit, remembered per device to recognise a retransmission."""

    device: str
    raw_sha256: str
    rejected: bool = False  # the frame went to the quarantine: its answer, and any resend's, is NAK


@dataclass(frozen=True)
class DeviceFrame:
    device: str
    raw_sha256: str
    committed_at_ms: int
    acked: bool
    rejected: bool = False  # see FrameMarker.rejected


@dataclass(frozen=True)
class QuarantineRecord:
    id: int
    received_at_ms: int
    source: str
    reason_code: str
    reason: str
    raw: bytes
    raw_sha256: str


@dataclass(frozen=True)
class OutboxStats:
    events: int  # rows waiting for the cloud's ack
    oldest_seq: int  # 0 when empty
    newest_seq: int  # highest seq ever assigned in this outbox
    oldest_created_at_ms: int  # 0 when empty
    quarantined: int
    file_bytes: int
