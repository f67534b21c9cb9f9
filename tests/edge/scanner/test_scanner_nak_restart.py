"""A refused scan stays refused across an agent restart: the NAK decision is kept in the outbox's frame marker.

Real pseudo-terminals (the test writes as the scanner), a real outbox file closed and reopened between the
two agent lifetimes, and the real scan intake. A scanner with ACK/NAK resends a frame it got no answer for,
or one it got NAK for (Zebra: up to 3 times); that resend must be answered NAK and must not be quarantined
a second time, whether the first lifetime sent its NAK or died just before sending it.
"""

from __future__ import annotations

import asyncio
import random
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from edge.clock import SystemClock
from edge.config import ReadPointConfig
from edge.drivers.scanner import ScannerConfig, ScannerDriver
from edge.outbox import Outbox, open_outbox
from edge.pipeline.scan_intake import ScanIntake
from hw_sim.scanner import PtyPort

ACK, NAK = b"\x06", b"\x15"
BAD = b"]C1010950110153000421XYZ\r\n"  # GTIN check digit should be 3
GOOD = b"]C1010950110153000317270331\x1d21ABC123\r\n"
ANSWER_WAIT_S = 3.0
OPEN_WAIT_S = 5.0
READ_POINT = ReadPointConfig(
    name="dock-1",
    id="urn:tallyport:rp:t:dock-1",
    biz_location="urn:tallyport:loc:t:dock-1",
    biz_step="receiving",
    action="ADD",
    disposition="in_progress",
)


class AgentDiedBeforeAnswering(Exception):
    """Stands for the agent being killed between the quarantine commit and the NAK."""


class DiesBeforeAnswering(ScannerDriver):
    async def acknowledge(self, ok: bool) -> bool:
        raise AgentDiedBeforeAnswering


def scanner_config(port: PtyPort) -> ScannerConfig:
    return ScannerConfig(
        name="scanner0", port=str(port.link), read_point="dock-1", ack_nak=True, reconnect_delay_ms_initial=20
    )


@asynccontextmanager
async def agent(
    tmp_path: Path, port: PtyPort, driver_type: type[ScannerDriver] = ScannerDriver
) -> AsyncIterator[tuple[ScanIntake, Outbox, asyncio.Task[None]]]:
    """One agent lifetime: the outbox file opened, the intake reading the port; all closed on exit."""
    config = scanner_config(port)
    driver = driver_type(config, rng=random.Random(1))
    async with open_outbox(tmp_path / "outbox.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        intake = ScanIntake(
            driver,
            config,
            outbox=outbox,
            gateway_id="gw-1",
            read_point=READ_POINT,
            zone=zoneinfo.ZoneInfo("Europe/Amsterdam"),
            clock=SystemClock(),
        )
        task = asyncio.create_task(intake.run())
        try:
            # The driver flushes stale input when it opens the port: scan only once it has.
            async with asyncio.timeout(OPEN_WAIT_S):
                while not driver.available:
                    await asyncio.sleep(0.01)
            yield intake, outbox, task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def scan(port: PtyPort, frame: bytes) -> bytes:
    port.discard_incoming()
    port.write(frame)
    return await port.read(ANSWER_WAIT_S)


async def test_a_refused_scan_resent_after_a_restart_is_naked_and_quarantined_once(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    try:
        async with agent(tmp_path, port) as (_intake, outbox, _task):
            assert await scan(port, BAD) == NAK
            assert len(await outbox.list_quarantine(10)) == 1
        # The agent restarts; the scanner resends the label it got NAK for.
        async with agent(tmp_path, port) as (intake, outbox, _task):
            assert await scan(port, BAD) == NAK
            assert len(await outbox.list_quarantine(10)) == 1
            assert intake.counters.retransmits_total == 1 and intake.counters.rejected_total == 0
            # Another frame ends the refusal: the scanner works on as before.
            assert await scan(port, GOOD) == ACK
            assert len(await outbox.list_events(10)) == 1
    finally:
        port.close()


async def test_a_refused_scan_resent_after_a_crash_before_its_nak_is_naked_not_acked(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    try:
        async with agent(tmp_path, port, DiesBeforeAnswering) as (_intake, outbox, task):
            port.write(BAD)
            # The intake commits the quarantine row, then dies before the NAK goes out.
            done, _ = await asyncio.wait([task], timeout=ANSWER_WAIT_S)
            assert done and isinstance(task.exception(), AgentDiedBeforeAnswering)
            assert await port.read(0.2) == b""  # the scanner heard nothing
            (record,) = await outbox.list_quarantine(10)
            assert record.reason_code == "check_digit"
        # The scanner, still without an answer, resends the frame to the restarted agent.
        async with agent(tmp_path, port) as (intake, outbox, _task):
            assert await scan(port, BAD) == NAK
            assert len(await outbox.list_quarantine(10)) == 1
            assert await outbox.list_events(10) == []
            assert intake.counters.retransmits_total == 1
    finally:
        port.close()


async def test_an_accepted_scan_resent_after_a_crash_before_its_ack_is_still_acked_once(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "scanner0")
    port.open()
    try:
        async with agent(tmp_path, port, DiesBeforeAnswering) as (_intake, outbox, task):
            port.write(GOOD)
            done, _ = await asyncio.wait([task], timeout=ANSWER_WAIT_S)
            assert done and isinstance(task.exception(), AgentDiedBeforeAnswering)
            assert len(await outbox.list_events(10)) == 1
        async with agent(tmp_path, port) as (intake, outbox, _task):
            assert await scan(port, GOOD) == ACK
            assert len(await outbox.list_events(10)) == 1
            assert await outbox.list_quarantine(10) == []
            assert intake.counters.retransmits_total == 1
    finally:
        port.close()
