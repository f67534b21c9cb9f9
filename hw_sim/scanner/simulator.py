"""Runs a scanner scenario on a pseudo-terminal: frames on the wire, ACK/NAK handling, line noise, replugs.

Every scan and its outcome is appended to a ground-truth JSONL file (one object per line), which the
tests and the demo compare with what the cloud holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from pathlib import Path
from typing import IO

from hw_sim.scanner.pty_port import PtyPort
from hw_sim.scanner.scenario import Scan, ScannerScenario, generate_scans

log = logging.getLogger(__name__)

ACK = 0x06
NAK = 0x15
NOISE_BYTES = b"\x00\x00\x7f\x01\x02\x11\x13"


class ScannerSimulator:
    def __init__(self, scenario: ScannerScenario, truth: IO[str] | None = None, *, start_after_ms: int = 0) -> None:
        self._start_after_ms = start_after_ms
        self._scenario = scenario
        self._settings = scenario.scanner
        self._port = PtyPort(scenario.scanner.link)
        self._truth = truth
        self._rng = random.Random(scenario.run.seed ^ 0x5EED)
        self.sent_total = 0
        self.acked_total = 0
        self.naked_total = 0
        self.retransmits_total = 0

    def frame(self, scan: Scan) -> bytes:
        settings = self._settings
        text = settings.prefix + (scan.symbology if settings.aim else "") + scan.data + settings.suffix
        raw = text.encode("latin-1")
        if self._rng.random() < settings.noise_probability:
            raw = self._rng.choice(NOISE_BYTES).to_bytes(1, "big") + raw
        return raw

    async def run(self) -> None:
        self._port.open()
        log.info("scanner ready", extra={"link": str(self._port.link), "pty": self._port.slave_name})
        try:
            await asyncio.sleep(self._start_after_ms / 1000)
            for scan in generate_scans(self._scenario):
                replug_every = self._scenario.run.replug_every
                if replug_every and scan.number > 1 and (scan.number - 1) % replug_every == 0:
                    self._port.replug()
                    log.info("scanner re-enumerated", extra={"pty": self._port.slave_name})
                sent_unix_ms = time.time_ns() // 1_000_000
                outcome = await self._transmit(scan)
                self._record(scan, outcome, sent_unix_ms)
                await asyncio.sleep(self._settings.scan_interval_ms / 1000)
        finally:
            self._port.close()

    async def _transmit(self, scan: Scan) -> str:
        """Send one scan; with ACK/NAK on, resend on NAK (up to the retry cap) or on a missing answer."""
        settings = self._settings
        naks = 0
        self._port.discard_incoming()
        while True:
            self._port.write(self.frame(scan))
            self.sent_total += 1
            if not settings.ack_nak:
                return "sent"
            answer = await self._port.read(settings.ack_timeout_ms / 1000)
            if ACK in answer:
                self.acked_total += 1
                return "acked"
            if NAK in answer:
                naks += 1
                self.naked_total += 1
                if naks > settings.nak_retries_max:
                    return "rejected"
            elif not settings.retransmit_until_acked:
                return "timeout"
            self.retransmits_total += 1

    def _record(self, scan: Scan, outcome: str, sent_unix_ms: int) -> None:
        if self._truth is None:
            return
        line = {
            "n": scan.number,
            "data": scan.data,
            "symbology": scan.symbology,
            "valid": scan.valid,
            "object_id": scan.object_id,
            "gtin": scan.gtin,
            "quantity": scan.quantity,
            "outcome": outcome,
            "sent_unix_ms": sent_unix_ms,  # first transmission
        }
        self._truth.write(json.dumps(line) + "\n")
        self._truth.flush()


def read_truth(path: Path) -> list[dict[str, object]]:
    """The ground truth a simulator wrote as JSONL (scans, passages), one dict per line; [] before it exists."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
