"""Portal intake across a restart: journaled reads of finished passes are never replayed into a second pass."""

from __future__ import annotations

import asyncio
import random
import zoneinfo
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tallyport.v1 import events_pb2

from edge.config import ReadPointConfig
from edge.drivers.mqtt_subscription import NO_ACK, AckToken, DriverMessage
from edge.outbox import Outbox, open_outbox
from edge.pipeline.portal import PortalEngine
from edge.pipeline.portal_config import PortalConfig
from edge.pipeline.portal_intake import PortalIntake
from edge.pipeline.read_journal import RfidItem
from edge.pipeline.reads import TagRead

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
EPC_A = "3074257BF7194E4000001A85"
EPC_B = "3074257BF7194E4000001A86"


class ManualClock:
    def __init__(self) -> None:
        self.moment = T0

    def now(self) -> datetime:
        return self.moment

    def unix_ms(self) -> int:
        return int(self.moment.timestamp() * 1000)


class ScriptedReader:
    """The reader side of the intake: hands over prepared messages (the driver's contract), then waits."""

    def __init__(self, messages: list[DriverMessage[RfidItem]]) -> None:
        self._messages = messages

    async def messages(self) -> AsyncIterator[DriverMessage[RfidItem]]:
        for message in self._messages:
            yield message
        await asyncio.Event().wait()

    async def acknowledge(self, token: AckToken) -> None:
        return None


def _engine() -> PortalEngine:
    points = {
        f"{dock}-in": ReadPointConfig(
            name=f"{dock}-in", id=f"urn:rp:{dock}", biz_location=f"urn:loc:{dock}", biz_step="receiving", action="ADD"
        )
        for dock in ("dock-4", "dock-5")
    }
    points |= {
        f"{dock}-out": ReadPointConfig(
            name=f"{dock}-out", id=f"urn:rp:{dock}", biz_location=f"urn:loc:{dock}", biz_step="departing"
        )
        for dock in ("dock-4", "dock-5")
    }
    portals = [
        PortalConfig(
            name=dock,
            readers=[reader],
            outside_antennas=[1],
            inside_antennas=[2],
            inbound_read_point=f"{dock}-in",
            outbound_read_point=f"{dock}-out",
            biz_location=f"urn:loc:{dock}",
            session_idle_ms=1000,
        )
        for dock, reader in (("dock-4", "reader-4"), ("dock-5", "reader-5"))
    ]
    return PortalEngine(portals, points, "gw-1", zoneinfo.ZoneInfo("UTC"))


def _message(reader: str, antenna: int, epc: str, at_ms: int) -> DriverMessage[RfidItem]:
    at = T0 + timedelta(milliseconds=at_ms)
    read = TagRead(reader, antenna, epc, at, peak_rssi_dbm=-50.0)
    payload = f"{reader} {antenna} {epc} {at_ms}".encode()  # as a reader message, unique per report
    return DriverMessage(source=reader, payload=payload, received_at=at, items=(read,), rejects=(), token=NO_ACK)


async def _run_until(
    intake: PortalIntake, clock: ManualClock, outbox: Outbox, reader: ScriptedReader | None, until_ms: int
) -> None:
    tasks = [asyncio.create_task(intake.run())]
    if reader is not None:
        tasks.append(asyncio.create_task(intake.read_from(reader._messages[0].source, reader)))
    for step_ms in range(0, until_ms + 1, 100):
        clock.moment = T0 + timedelta(milliseconds=step_ms)
        await asyncio.sleep(0.02)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_quiet_door_s_finished_pass_is_not_replayed_while_another_door_is_busy(tmp_path: Path) -> None:
    clock = ManualClock()
    async with open_outbox(tmp_path / "o.db", clock=clock, rng=random.Random(1)) as outbox:
        # dock-4: EPC A passes outside → inside within 1 s; dock-5 stays busy with EPC B the whole time.
        dock4 = [_message("reader-4", 1 if at < 500 else 2, EPC_A, at) for at in range(0, 1001, 200)]
        dock5 = [_message("reader-5", 1, EPC_B, at) for at in range(300, 4001, 200)]
        messages = sorted(dock4 + dock5, key=lambda m: m.received_at)
        first = PortalIntake(_engine, outbox, clock, {"reader-4": "zebra_reader", "reader-5": "zebra_reader"})
        # One reader object feeding both readers' messages keeps the test's timeline simple.
        await _run_until(first, clock, outbox, ScriptedReader(messages), until_ms=3000)
        before = [e for e in await outbox.list_events(100) if any(o.epc_hex == EPC_A for o in e.objects)]
        assert len(before) == 1 and before[0].biz_step == events_pb2.BIZ_STEP_RECEIVING
        # kill -9 here: a fresh intake replays whatever the journal still holds.
        second = PortalIntake(_engine, outbox, clock, {"reader-4": "zebra_reader", "reader-5": "zebra_reader"})
        await _run_until(second, clock, outbox, None, until_ms=8000)
        after = [e for e in await outbox.list_events(100) if any(o.epc_hex == EPC_A for o in e.objects)]
    assert len(after) == 1, [events_pb2.BizStep.Name(e.biz_step) for e in after]


async def test_a_message_the_broker_redelivers_after_a_restart_is_not_read_twice(tmp_path: Path) -> None:
    clock = ManualClock()
    async with open_outbox(tmp_path / "o.db", clock=clock, rng=random.Random(1)) as outbox:
        messages = [_message("reader-4", 1 if at < 500 else 2, EPC_A, at) for at in range(0, 1001, 200)]
        drivers = {"reader-4": "zebra_reader", "reader-5": "zebra_reader"}
        first = PortalIntake(_engine, outbox, clock, drivers)
        await _run_until(first, clock, outbox, ScriptedReader(messages), until_ms=3000)
        # The PUBACKs were lost with the agent: the broker sends every message again to the new agent.
        second = PortalIntake(_engine, outbox, clock, drivers)
        await _run_until(second, clock, outbox, ScriptedReader(messages), until_ms=6000)
        events = [e for e in await outbox.list_events(100) if any(o.epc_hex == EPC_A for o in e.objects)]
        assert second.redeliveries_total == len(messages)
    assert len(events) == 1
