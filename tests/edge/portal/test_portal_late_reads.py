"""Late reads: a reader's buffer replayed after a broker outage must not emit a pallet's passage a second time.

A fixed reader that loses its broker keeps its reads and publishes them once the broker is back, each with
its own (old) read time. The engine remembers what each pass emitted and drops those replayed reads as
late duplicates, while a tag read live again (a pallet backing out) and a passage after the late-read
horizon still emit. The scenarios drive the engine as the agent does (`Door` from the engine tests), and one
goes through the RFID intake with its read journal and a real outbox.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
from test_portal_engine import INSIDE, OUTSIDE, Door, at, epcs_of, portal, sgtin
from test_portal_intake_restart import EPC_A, EPC_B, T0, ManualClock, ScriptedReader, _engine

import edge.pipeline.portal as portal_module
from edge.drivers.mqtt_subscription import NO_ACK, DriverMessage
from edge.outbox import open_outbox
from edge.pipeline.portal import PortalPass
from edge.pipeline.portal_config import PortalConfig
from edge.pipeline.portal_intake import PortalIntake
from edge.pipeline.read_journal import RfidItem
from edge.pipeline.reads import TagRead

PORTAL_LOGGER = "edge.pipeline.portal"
Read = tuple[float, str, int, float]  # (read time ms, EPC, antenna, RSSI)


def crossing_reads(start_ms: float, epcs: list[str], direction: Literal["inbound", "outbound"]) -> Iterator[Read]:
    """The reads of `Door.crossing`: around a peak on the first antenna group, then on the second."""
    first, second = (OUTSIDE, INSIDE) if direction == "inbound" else (INSIDE, OUTSIDE)
    for offset, antenna, loss in ((0, first, 8), (100, first, 0), (200, first, 8)):
        for index, epc in enumerate(epcs):
            yield start_ms + offset + index, epc, antenna, -50.0 - loss
    for offset, antenna, loss in ((600, second, 8), (700, second, 0), (800, second, 8)):
        for index, epc in enumerate(epcs):
            yield start_ms + offset + index, epc, antenna, -50.0 - loss


def feed(
    door: Door, reads: Iterator[Read] | list[Read], *, arrival_ms: float | None = None, reader: str = "reader-4"
) -> int:
    """Feed reads live (arriving at their read time) or, with `arrival_ms`, all at once as a replayed buffer."""
    count = 0
    for seen_ms, epc, antenna, rssi in reads:
        door.tag(seen_ms, epc, antenna, rssi, reader=reader, received_ms=arrival_ms)
        count += 1
    return count


def emitted(passes: list[PortalPass]) -> list[set[str]]:
    return [epcs_of(item) for item in passes if item.objects]


def test_a_buffer_replayed_after_an_outage_does_not_emit_the_passage_again(caplog: pytest.LogCaptureFixture) -> None:
    door = Door(portal())
    load = [sgtin(1), sgtin(2)]
    feed(door, crossing_reads(0, load, "inbound"))
    door.tick(10_000)
    assert emitted(door.passes) == [set(load)]
    # The reader lost the broker just after the pass and republishes its buffer (the same reads) 5 min on.
    with caplog.at_level(logging.WARNING, logger=PORTAL_LOGGER):
        replayed = feed(door, crossing_reads(0, load, "inbound"), arrival_ms=300_000)
        door.finish(400_000)
    assert emitted(door.passes) == [set(load)]  # no second movement
    assert door.engine.open_sessions() == 0
    counters = door.engine.counters()["dock-4"]
    assert counters["late_reads_dropped"] == replayed == 12
    assert counters["sessions"] == 1
    (line,) = [record.getMessage() for record in caplog.records if record.name == PORTAL_LOGGER]
    assert "late reads of pass 1 of dock-4" in line  # once for the pass, not once per read


def test_an_outage_that_cuts_a_passage_short_drops_its_tail_and_keeps_the_tags_the_pass_missed() -> None:
    door = Door(portal(session_idle_ms=2000))
    # Live: the first 300 ms of the passage on the outside antennas; then the broker goes away.
    reads = list(crossing_reads(0, [sgtin(1)], "inbound"))
    feed(door, reads[:3])
    door.tick(10_000)
    (first,) = door.passes
    assert epcs_of(first) == {sgtin(1)} and first.ended_at == at(200)
    # The buffer comes 2 min later: the rest of the passage (up to 6 s after the pass's last live read),
    # and a second case on the same pallet that no live read caught.
    tail = reads[3:] + [(ms, sgtin(1), INSIDE, -50.0) for ms in range(1000, 6001, 500)]
    missed = [(ms, sgtin(2), antenna, -50.0) for ms, _, antenna, _ in reads]
    feed(door, sorted(tail + missed), arrival_ms=120_000)
    passes = door.finish(200_000)
    assert emitted(passes) == [{sgtin(1)}, {sgtin(2)}]  # the missed case is a movement of its own, once
    assert door.engine.counters()["dock-4"]["late_reads_dropped"] == len(tail)


def test_a_tag_read_live_again_after_its_pass_is_a_new_passage() -> None:
    door = Door(portal(session_idle_ms=2000, late_read_horizon_ms=30_000))
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"))
    # The forklift backs out 5 s later, well within the horizon: live reads, so not late.
    feed(door, crossing_reads(5000, [sgtin(1)], "outbound"))
    passes = door.finish()
    assert [item.direction for item in passes if item.objects] == ["inbound", "outbound"]
    assert door.engine.counters()["dock-4"].get("late_reads_dropped", 0) == 0


def test_a_pallet_backing_out_during_the_outage_is_a_new_passage_within_the_horizon() -> None:
    door = Door(portal(session_idle_ms=2000, late_read_horizon_ms=30_000))
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"))
    door.tick(3000)
    # The broker went away as the pass closed. The buffer holds the end of the passage (contiguous with it)
    # and, after a quiet gap of 6.5 s, the pallet going back out: replayed together 2 min later.
    tail = [(1000.0, sgtin(1), INSIDE, -55.0), (1500.0, sgtin(1), INSIDE, -60.0)]
    feed(door, [*tail, *crossing_reads(8000, [sgtin(1)], "outbound")], arrival_ms=120_000)
    passes = door.finish(200_000)
    assert [(epcs_of(item), item.direction) for item in passes] == [({sgtin(1)}, "inbound"), ({sgtin(1)}, "outbound")]
    assert door.engine.counters()["dock-4"]["late_reads_dropped"] == len(tail)


def test_a_late_passage_after_the_horizon_still_emits() -> None:
    door = Door(portal(late_read_horizon_ms=30_000))
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"))
    door.tick(10_000)
    # Outbound 2 min later during an outage: read time past the pass's end plus the horizon.
    feed(door, crossing_reads(120_000, [sgtin(1)], "outbound"), arrival_ms=900_000)
    passes = door.finish(1_000_000)
    assert [(epcs_of(item), item.direction) for item in passes] == [({sgtin(1)}, "inbound"), ({sgtin(1)}, "outbound")]
    assert door.engine.counters()["dock-4"].get("late_reads_dropped", 0) == 0


def test_a_late_read_before_the_pass_within_the_horizon_is_its_own() -> None:
    door = Door(portal(late_read_horizon_ms=30_000))
    feed(door, crossing_reads(60_000, [sgtin(1)], "inbound"))
    door.tick(70_000)
    # The reader buffered reads of the pallet in the staging lane, 20 s before it entered the door.
    feed(door, [(40_000 + ms, sgtin(1), OUTSIDE, -60.0) for ms in range(0, 1000, 100)], arrival_ms=400_000)
    # ... and a pass 40 s before it, beyond the horizon: an earlier passage that produced nothing yet.
    feed(door, crossing_reads(20_000, [sgtin(1)], "outbound"), arrival_ms=400_100)
    passes = door.finish(500_000)
    assert [item.direction for item in passes if item.objects] == ["inbound", "outbound"]
    assert door.engine.counters()["dock-4"]["late_reads_dropped"] == 10


def test_the_reader_clock_offset_is_taken_from_the_pass_itself() -> None:
    door = Door(portal(session_idle_ms=2000))
    behind_ms = 3_600_000  # the reader's clock is an hour behind the gateway's
    for seen_ms, epc, antenna, rssi in crossing_reads(0, [sgtin(1)], "inbound"):
        door.tag(seen_ms, epc, antenna, rssi, received_ms=seen_ms + behind_ms)
    # Live again 10 s later: an hour "late" by the clocks, on time by the reader's own relation.
    for seen_ms, epc, antenna, rssi in crossing_reads(10_000, [sgtin(1)], "outbound"):
        door.tag(seen_ms, epc, antenna, rssi, received_ms=seen_ms + behind_ms)
    door.tick(behind_ms + 20_000)
    # Then the buffer of the first passage, replayed a minute later.
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"), arrival_ms=behind_ms + 80_000)
    passes = door.finish(behind_ms + 120_000)
    assert [item.direction for item in passes if item.objects] == ["inbound", "outbound"]
    assert door.engine.counters()["dock-4"]["late_reads_dropped"] == 6


def test_late_reads_do_not_join_another_load_s_session() -> None:
    door = Door(portal(session_idle_ms=2000))
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"))
    door.tick(10_000)
    # The next pallet is in the door when the first pallet's reads are replayed.
    for seen_ms, epc, antenna, rssi in crossing_reads(60_000, [sgtin(5)], "inbound"):
        door.tag(seen_ms, epc, antenna, rssi)
        if seen_ms == 60_100:
            feed(door, crossing_reads(0, [sgtin(1)], "inbound"), arrival_ms=60_100)
    passes = door.finish()
    assert emitted(passes) == [{sgtin(1)}, {sgtin(5)}]


def test_a_late_cross_read_at_the_neighbour_door_is_dropped() -> None:
    door = Door(portal("dock-4", neighbours=["dock-5"]), portal("dock-5"))
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"), reader="reader-4")
    door.tick(10_000)
    # dock-5's reader heard the same pallet through the wall; its buffer arrives after the outage.
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"), arrival_ms=300_000, reader="reader-5")
    passes = door.finish(400_000)
    assert [(item.portal.name, epcs_of(item)) for item in passes if item.objects] == [("dock-4", {sgtin(1)})]
    assert door.engine.counters()["dock-5"]["late_reads_dropped"] == 6


def test_passes_are_forgotten_after_the_memory_and_the_rule_can_be_turned_off() -> None:
    for memory_ms, expected in ((60_000, [{sgtin(1)}, {sgtin(1)}]), (0, [{sgtin(1)}, {sgtin(1)}])):
        door = Door(portal(late_read_memory_ms=memory_ms))
        feed(door, crossing_reads(0, [sgtin(1)], "inbound"))
        door.tick(100_000)  # past a 60 s memory
        feed(door, crossing_reads(0, [sgtin(1)], "inbound"), arrival_ms=100_000)
        assert emitted(door.finish(200_000)) == expected, memory_ms
    door = Door(portal(late_read_memory_ms=120_000))
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"))
    door.tick(100_000)  # within a 120 s memory
    feed(door, crossing_reads(0, [sgtin(1)], "inbound"), arrival_ms=100_000)
    assert emitted(door.finish(200_000)) == [{sgtin(1)}]


def test_the_memory_keeps_the_newest_passes_within_its_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portal_module, "LATE_READ_PASSES_MAX", 3)
    door = Door(portal())
    for number in range(5):
        feed(door, crossing_reads(number * 10_000, [sgtin(number)], "inbound"))
    door.tick(60_000)
    for number in range(5):  # every passage's buffer, replayed at once
        feed(door, crossing_reads(number * 10_000, [sgtin(number)], "inbound"), arrival_ms=300_000)
    passes = door.finish(500_000)
    # The two oldest passes were forgotten: their late reads emit again (one session, split by the quiet gap
    # between their read times); the three newest passes are recognised.
    assert emitted(passes)[5:] == [{sgtin(0)}, {sgtin(1)}]
    assert door.engine.counters()["dock-4"]["late_reads_dropped"] == 3 * 6


def test_the_late_read_settings_are_validated() -> None:
    base = portal()
    assert (base.late_read_horizon_ms, base.late_read_memory_ms) == (30_000, 21_600_000)
    for key, value in (("late_read_horizon_ms", -1), ("late_read_memory_ms", 8 * 86_400_000)):
        with pytest.raises(ValueError, match=key):
            PortalConfig(**(base.model_dump() | {key: value}))


async def test_a_reader_buffer_replayed_through_the_intake_stores_each_pallet_once(tmp_path: Path) -> None:
    """Reads journaled, acked and fed as the agent does, into a real outbox: one event for the passage."""
    clock = ManualClock()

    def message(epc: str, antenna: int, seen_ms: int, arrival_ms: int) -> DriverMessage[RfidItem]:
        read = TagRead("reader-4", antenna, epc, T0 + timedelta(milliseconds=seen_ms), peak_rssi_dbm=-50.0)
        payload = f"reader-4 {antenna} {epc} {seen_ms}".encode()
        arrival = T0 + timedelta(milliseconds=arrival_ms)
        return DriverMessage(
            source="reader-4", payload=payload, received_at=arrival, items=(read,), rejects=(), token=NO_ACK
        )

    live = [message(EPC_A, 1 if ms < 500 else 2, ms, ms) for ms in range(0, 1001, 200)]
    # The broker was away from 1 s to 5 s; the reader then publishes what it kept: the end of EPC A's passage
    # (already emitted) and EPC B, which was on the pallet but only read during the outage.
    buffered = [message(EPC_A, 2, ms, 5000) for ms in range(1200, 2001, 200)]
    buffered += [message(EPC_B, 1 if ms < 1500 else 2, ms, 5000) for ms in range(1000, 2001, 200)]
    async with open_outbox(tmp_path / "o.db", clock=clock, rng=random.Random(1)) as outbox:
        intake = PortalIntake(_engine, outbox, clock, {"reader-4": "zebra_reader", "reader-5": "zebra_reader"})
        tasks = [asyncio.create_task(intake.run())]
        pending = [*live, *buffered]
        for step_ms in range(0, 12_001, 100):
            clock.moment = T0 + timedelta(milliseconds=step_ms)
            due = [item for item in pending if item.received_at <= clock.moment]
            pending = [item for item in pending if item.received_at > clock.moment]
            if due:
                tasks.append(asyncio.create_task(intake.read_from("reader-4", ScriptedReader(due))))
            await asyncio.sleep(0.02)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        events = await outbox.list_events(100)
        journal = await outbox.journaled_reads()
    epcs = [obj.epc_hex for event in events for obj in event.objects]
    assert sorted(epcs) == [EPC_A, EPC_B]  # each once: the replayed tail of A's passage did not emit A again
    assert intake.passes_total == 2
    assert journal == []  # the dropped late reads left the journal too
