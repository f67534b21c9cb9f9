"""Scan intake over a real pseudo-terminal and a real outbox: commit first, then ACK/NAK, never twice."""

from __future__ import annotations

import asyncio
import hashlib
import random
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tallyport.v1 import events_pb2

from edge.clock import SystemClock
from edge.config import ReadPointConfig
from edge.drivers.scanner import ScannerConfig, ScannerDriver
from edge.outbox import FrameMarker, Outbox, open_outbox
from edge.pipeline.scan_intake import ScanIntake
from hw_sim.scanner import PtyPort

ACK, NAK = b"\x06", b"\x15"
GOOD = b"]C1010950110153000317270331\x1d21ABC123\r\n"
BAD = b"]C1010950110153000421XYZ\r\n"  # GTIN check digit should be 3
READ_POINT = ReadPointConfig(
    name="dock-1",
    id="urn:tallyport:rp:t:dock-1",
    biz_location="urn:tallyport:loc:t:dock-1",
    biz_step="receiving",
    action="ADD",
    disposition="in_progress",
)


class Station:
    """A simulated scanner on a pty, the gateway's outbox, and an intake task reading the port."""

    def __init__(self, port: PtyPort, outbox: Outbox, config: ScannerConfig) -> None:
        self.port, self.outbox, self.config = port, outbox, config
        self.intake: ScanIntake | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.intake = ScanIntake(
            ScannerDriver(self.config, rng=random.Random(1)),
            self.config,
            outbox=self.outbox,
            gateway_id="gw-1",
            read_point=READ_POINT,
            zone=zoneinfo.ZoneInfo("Europe/Amsterdam"),
            clock=SystemClock(),
        )
        self._task = asyncio.create_task(self.intake.run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def scan(self, frame: bytes) -> bytes:
        """Send one frame and return the scanner's answer (ACK, NAK or b"")."""
        self.port.discard_incoming()
        self.port.write(frame)
        return await self.port.read(3.0)


@pytest.fixture
async def station(tmp_path: Path) -> AsyncIterator[Station]:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    config = ScannerConfig(name="scanner0", port=str(port.link), read_point="dock-1", ack_nak=True)
    async with open_outbox(tmp_path / "outbox.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        station = Station(port, outbox, config)
        station.start()
        await asyncio.sleep(0.2)  # let the driver open the port
        yield station
        await station.stop()
    port.close()


async def test_a_valid_scan_is_committed_before_the_scanner_hears_ack(station: Station) -> None:
    assert await station.scan(GOOD) == ACK
    # The ACK came after the commit, so the event is already in the outbox.
    (event,) = await station.outbox.list_events(10)
    assert event.seq == 1 and event.event_id.startswith("urn:uuid:")
    assert event.biz_step == events_pb2.BIZ_STEP_RECEIVING and event.action == events_pb2.ACTION_ADD
    assert event.disposition == events_pb2.DISPOSITION_IN_PROGRESS
    assert event.biz_location == READ_POINT.biz_location and event.read_point.device_id == "scanner0"
    assert [(o.id, o.gtin, o.serial, o.expiry_date) for o in event.objects] == [
        ("https://id.gs1.org/01/09501101530003/21/ABC123", "09501101530003", "ABC123", "2027-03-31")
    ]
    assert event.event_time_offset_minutes == 60  # Amsterdam in winter
    assert event.lineage.raw_sha256 == hashlib.sha256(GOOD.rstrip(b"\r\n")).hexdigest()


async def test_a_bad_label_is_quarantined_with_its_reason_and_naked_once(station: Station) -> None:
    assert await station.scan(BAD) == NAK
    assert await station.scan(BAD) == NAK  # the scanner's retransmission after NAK is not stored again
    records = await station.outbox.list_quarantine(10)
    assert len(records) == 1
    assert records[0].reason_code == "check_digit" and "Expected 3, got 4" in records[0].reason
    assert records[0].raw == BAD.rstrip(b"\r\n")
    assert await station.outbox.list_events(10) == []


async def test_line_noise_around_a_scan_does_not_stop_it(station: Station) -> None:
    assert await station.scan(b"\x00\x7f" + GOOD) == ACK
    assert len(await station.outbox.list_events(10)) == 1


async def test_a_scan_resent_after_a_crash_between_commit_and_ack_is_stored_once(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    config = ScannerConfig(name="scanner0", port=str(port.link), read_point="dock-1", ack_nak=True)
    async with open_outbox(tmp_path / "outbox.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        # What a crash leaves behind: the event and its frame marker committed, the ACK never sent.
        digest = hashlib.sha256(GOOD.rstrip(b"\r\n")).hexdigest()
        await outbox.append(events_pb2.Event(gateway_id="gw-1"), marker=FrameMarker("scanner0", digest))
        station = Station(port, outbox, config)
        station.start()
        await asyncio.sleep(0.2)
        assert await station.scan(GOOD) == ACK  # the scanner's retransmission
        assert len(await outbox.list_events(10)) == 1
        assert station.intake is not None and station.intake.counters.retransmits_total == 1
        assert await station.scan(GOOD) == ACK  # now acknowledged: the same label again is a new scan
        assert len(await outbox.list_events(10)) == 2
        await station.stop()
    port.close()


async def test_the_intake_survives_the_port_vanishing_and_coming_back(station: Station) -> None:
    assert await station.scan(GOOD) == ACK
    station.port.replug()  # USB re-enumeration: a new pty behind the same link
    other = GOOD.replace(b"ABC123", b"ABC124")
    answer = b""
    for _ in range(20):  # the driver needs a moment to notice and reopen
        answer = await station.scan(other)
        if answer:
            break
    assert answer == ACK
    assert len(await station.outbox.list_events(10)) == 2


async def test_without_ack_nak_the_same_label_twice_is_two_scans(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    config = ScannerConfig(name="scanner0", port=str(port.link), read_point="dock-1", ack_nak=False)
    ean = b"]E05901234123457\r\n"  # a trade item without serial: each scan is one more item
    async with open_outbox(tmp_path / "outbox.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        station = Station(port, outbox, config)
        station.start()
        await asyncio.sleep(0.2)
        port.write(ean)
        await asyncio.sleep(0.3)
        port.write(ean)
        async with asyncio.timeout(5):
            while len(await outbox.list_events(10)) < 2:
                await asyncio.sleep(0.05)
        events = await outbox.list_events(10)
        await station.stop()
    port.close()
    assert [e.quantities[0].gtin for e in events] == ["05901234123457", "05901234123457"]
