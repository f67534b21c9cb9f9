"""Pallets through two dock doors: door A's reader speaks Zebra IoT Connector, door B's the Impinj IoT interface.

Both publish to a real MQTT broker. Each passage (door, direction, EPCs) is appended to a ground-truth
JSONL file so a test or the demo can score what the gateway made of it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hw_sim.rfid.passages import DoorLayout, PassageRun, PassageScenario, SimGpiEdge, SimTagRead, generate_passages
from hw_sim.rfid_readers.mqtt_publishers import ImpinjMqttPublisher, ZebraMqttPublisher

DOOR_A = DoorLayout("door-a", "reader-a")
DOOR_B = DoorLayout("door-b", "reader-b")


def plan(passages: int, seed: int, *, start: datetime | None = None, gpi: bool = False) -> PassageRun:
    """A run starting now (or at `start`), so the events carry today's times."""
    scenario = PassageScenario(
        seed=seed,
        passages=passages,
        doors=(DOOR_A, DOOR_B),
        start=(start or datetime.now(UTC)) + timedelta(seconds=1),
        gpi=gpi,
        cases_max=6,
    )
    return generate_passages(scenario)


def write_truth(run: PassageRun, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as truth:
        for passage in run.passages:
            line = {
                "passage": passage.index,
                "door": passage.door,
                "direction": passage.direction,
                "sscc_hex": passage.sscc,
                "sgtin_hex": list(passage.sgtins),
                "ended_at": passage.ended_at.isoformat(),
            }
            truth.write(json.dumps(line) + "\n")


async def publish(run: PassageRun, host: str, port: int, topic_prefix: str, speedup: float = 1.0) -> int:
    """Replay the run's reads on both readers' topics at their own pace; return the messages sent."""
    door_a: list[SimTagRead | SimGpiEdge] = [e for e in run.events if e.reader == DOOR_A.reader]
    door_b: list[SimTagRead | SimGpiEdge] = [e for e in run.events if e.reader == DOOR_B.reader]
    zebra = ZebraMqttPublisher(
        host,
        port,
        tag_topic=f"{topic_prefix}/reader-a/data",
        event_topic=f"{topic_prefix}/reader-a/events",
        batch_max=1,  # one report per message: a batch held for its fourth tag would arrive a passage late
    )
    impinj = ImpinjMqttPublisher(host, port, topic=f"{topic_prefix}/reader-b/events", hostname="impinj-door-b")
    # Both replays share time zero: the earliest read of the run.
    origin = min(event.seen_at for event in run.events)
    marker = SimGpiEdge(reader="none", pin=0, state="low", seen_at=origin, passage=-1)
    sent = await asyncio.gather(
        zebra.run(_with_origin(door_a, marker), speedup=speedup),
        impinj.run(_with_origin(door_b, marker), speedup=speedup),
    )
    return sum(sent)


def _with_origin(events: list[SimTagRead | SimGpiEdge], marker: SimGpiEdge) -> list[SimTagRead | SimGpiEdge]:
    # The publishers start their clock at their first item; a GPI edge on an unused pin at the run's
    # origin keeps both doors on one timeline (the gateway ignores pins no portal claims).
    return [replace(marker, reader=events[0].reader if events else "none"), *events]
