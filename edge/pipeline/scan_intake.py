"""One scanner's intake: frame → decode → commit (event or quarantine) → ACK/NAK, strictly in that order.

The scanner hears ACK only after its read is durable, so a crash before the commit makes it resend.
A crash *between* commit and ACK makes it resend a read we already hold: the outbox remembers the last
committed frame per device and whether its ACK went out, so that one retransmission is recognised,
acknowledged and not stored twice. (The cost: if the ACK did go out but the agent died before
recording it, a deliberate rescan of the very same label within `RETRANSMIT_WINDOW_MS` is taken for
a retransmission. Serialised labels are unaffected; a GTIN-only label would be counted once.)
A refused frame is remembered the same way: its marker records that it went to the quarantine, so a
resend of it is NAKed again and not quarantined twice, across restarts too (a crash between the
quarantine commit and the NAK must not turn the resend into an ACK).
"""

from __future__ import annotations

import hashlib
import logging
import zoneinfo
from dataclasses import dataclass

from edge.clock import Clock
from edge.config import ReadPointConfig
from edge.drivers.scanner import Frame, ScanDecoded, ScannerConfig, ScannerDriver, clean_text, decode_frame
from edge.errors import OutboxError
from edge.outbox import DeviceFrame, FrameMarker, Outbox, Rejected
from edge.pipeline.scan_events import scan_to_event

log = logging.getLogger(__name__)

RETRANSMIT_WINDOW_MS = 30_000


@dataclass
class IntakeCounters:
    frames_total: int = 0
    events_total: int = 0
    rejected_total: int = 0
    retransmits_total: int = 0
    commit_failures_total: int = 0


class ScanIntake:
    def __init__(
        self,
        driver: ScannerDriver,
        config: ScannerConfig,
        *,
        outbox: Outbox,
        gateway_id: str,
        read_point: ReadPointConfig,
        zone: zoneinfo.ZoneInfo,
        clock: Clock,
    ) -> None:
        self._driver = driver
        self._config = config
        self._options = config.decode_options()
        self._outbox = outbox
        self._gateway_id = gateway_id
        self._read_point = read_point
        self._zone = zone
        self._clock = clock
        self.counters = IntakeCounters()
        self._unacked: DeviceFrame | None = None
        self._last_naked_sha256 = ""

    async def run(self) -> None:
        """Read frames until cancelled; device faults are retried inside the driver."""
        if self._config.ack_nak:  # without ACK/NAK a scanner never resends, so there is nothing to recognise
            last = await self._outbox.last_frame(self._config.name)
            self._unacked = last if last is not None and not last.acked else None
            # The NAK decision outlives the process: a resend of the refused frame is refused again.
            self._last_naked_sha256 = last.raw_sha256 if last is not None and last.rejected else ""
        async with self._driver:
            async for frame in self._driver.frames():
                await self.handle(frame)

    async def handle(self, frame: Frame) -> None:
        self.counters.frames_total += 1
        # Line noise differs between two transmissions of one scan, so compare what the scan says.
        digest = hashlib.sha256(clean_text(frame.data, self._options).encode("latin-1")).hexdigest()
        if self._is_retransmission(digest) or digest == self._last_naked_sha256:
            # Already stored (or already refused): answer as before, store nothing new.
            self.counters.retransmits_total += 1
            ok = digest != self._last_naked_sha256
            await self._answer(ok)
            return
        self._unacked = None
        result = decode_frame(frame, self._options)
        marker = FrameMarker(self._config.name, digest)
        try:
            if isinstance(result, ScanDecoded):
                await self._store_event(result, marker)
                ok = True
            else:
                rejected = Rejected(self._config.name, result.reason_code, result.reason, result.raw, result.raw_sha256)
                await self._outbox.quarantine(rejected, marker=FrameMarker(self._config.name, digest, rejected=True))
                self.counters.rejected_total += 1
                log.info("scan quarantined", extra={"device": self._config.name, "reason": result.reason})
                ok = False
        except OutboxError:
            # Not durable, so not acknowledged: the scanner resends or the operator rescans.
            self.counters.commit_failures_total += 1
            return
        if self._config.ack_nak:
            self._last_naked_sha256 = "" if ok else digest
            # Until the answer is known to have reached the scanner, a resend of this frame is a retransmission.
            self._unacked = DeviceFrame(self._config.name, digest, self._clock.unix_ms(), acked=False)
        await self._answer(ok)

    def _is_retransmission(self, digest: str) -> bool:
        unacked = self._unacked
        return (
            unacked is not None
            and unacked.raw_sha256 == digest
            and self._clock.unix_ms() - unacked.committed_at_ms <= RETRANSMIT_WINDOW_MS
        )

    async def _store_event(self, scan: ScanDecoded, marker: FrameMarker) -> None:
        event = scan_to_event(
            scan,
            gateway_id=self._gateway_id,
            device_id=self._config.name,
            read_point=self._read_point,
            read_time=self._clock.now().astimezone(self._zone),
        )
        seq = await self._outbox.append(event, marker=marker)
        self.counters.events_total += 1
        log.debug("scan stored", extra={"device": self._config.name, "seq": seq, "event_id": event.event_id})

    async def _answer(self, ok: bool) -> None:
        if not await self._driver.acknowledge(ok):
            return  # not sent (or ACK/NAK off): the frame stays the one a resend would repeat
        self._unacked = None
        try:
            await self._outbox.mark_frame_acked(self._config.name)
        except OutboxError:
            log.warning("could not record an ACK", extra={"device": self._config.name})
