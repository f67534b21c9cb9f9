"""The gateway's alarms: the registry, the outbox's disk-cap alarms, and the uplink carrying them to a real cloud."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from tallyport.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc, inventory_pb2, inventory_pb2_grpc

from cloud.config import CloudConfig
from cloud.server import CloudServer
from edge.alarms import AlarmRegistry
from edge.backoff import Backoff
from edge.clock import SystemClock
from edge.errors import OutboxFullError
from edge.outbox import open_outbox
from edge.outbox.outbox import ALARM_FULL, ALARM_NEAR_CAP, ALARM_SHEDDING
from edge.uplink import Uplink, UplinkSettings

GATEWAY = "gw-alarms"
CAP = 1024 * 1024


class ManualClock:
    def __init__(self, unix_ms: int) -> None:
        self.ms = unix_ms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.ms / 1000, tz=UTC)

    def unix_ms(self) -> int:
        return self.ms


def test_an_alarm_is_one_row_per_code_and_keeps_when_it_was_raised() -> None:
    clock = ManualClock(1000)
    registry = AlarmRegistry(clock)
    registry.raise_alarm("outbox_full", "critical", "full")
    assert registry.changed.is_set()
    registry.changed.clear()
    clock.ms = 2000
    registry.raise_alarm("outbox_full", "critical", "full")
    assert not registry.changed.is_set(), "raising an unchanged active alarm again is no change"
    registry.raise_alarm("outbox_full", "critical", "still full")
    (alarm,) = registry.snapshot()
    assert (alarm.raised_at_ms, alarm.message, alarm.active) == (1000, "still full", True)
    registry.clear("outbox_full", "drained")
    clock.ms = 3000
    assert registry.active() == []
    registry.raise_alarm("outbox_full", "critical", "full again")
    assert registry.snapshot()[0].raised_at_ms == 3000, "a cleared alarm raised again is a new occurrence"


def _sensor(n: int) -> events_pb2.Event:
    event = events_pb2.Event(gateway_id=GATEWAY, biz_location="x" * 2000, event_class=events_pb2.EVENT_CLASS_SENSOR)
    event.event_time.GetCurrentTime()
    return event


def _movement(n: int) -> events_pb2.Event:
    event = events_pb2.Event(gateway_id=GATEWAY, biz_location="y" * 2000)
    event.event_time.GetCurrentTime()
    return event


async def test_the_outbox_raises_and_clears_its_disk_cap_alarms(tmp_path: Path) -> None:
    alarms = AlarmRegistry(SystemClock())
    async with open_outbox(
        tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1), bytes_max=CAP, alarms=alarms
    ) as outbox:
        for start in range(0, 600, 50):
            await outbox.append_many([_sensor(n) for n in range(start, start + 50)])
        assert alarms.is_active(ALARM_NEAR_CAP) and alarms.is_active(ALARM_SHEDDING)
        assert not alarms.is_active(ALARM_FULL)
        # Only movements from here: once no sample is left to shed, new events are refused.
        refused = False
        for _ in range(60):
            try:
                await outbox.append_many([_movement(n) for n in range(50)])
            except OutboxFullError:
                refused = True
                break
        assert refused and alarms.is_active(ALARM_FULL)
        (full,) = [alarm for alarm in alarms.active() if alarm.code == ALARM_FULL]
        assert full.severity == "critical"
        # The cloud takes the backlog: every disk-cap alarm clears.
        await outbox.delete_through((await outbox.stats()).newest_seq)
        assert [alarm.code for alarm in alarms.active()] == []
        assert {alarm.code for alarm in alarms.snapshot()} == {ALARM_NEAR_CAP, ALARM_SHEDDING, ALARM_FULL}


@contextlib.asynccontextmanager
async def _cloud(tmp_path: Path) -> AsyncIterator[CloudServer]:
    config = CloudConfig.model_validate(
        {"server": {"listen": "127.0.0.1:0", "shutdown_grace_ms": 200}, "store": {"path": str(tmp_path / "c.db")}}
    )
    async with CloudServer(config) as server:
        yield server


async def _listed_alarms(target: str) -> dict[str, bool]:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListGateways(
            inventory_pb2.ListGatewaysRequest(), timeout=5
        )
    return {alarm.code: alarm.active for state in reply.gateways for alarm in state.alarms}


async def _until(target: str, expected: dict[str, bool], timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while await _listed_alarms(target) != expected:
            await asyncio.sleep(0.05)


async def test_the_uplink_sends_the_alarms_after_hello_and_on_every_change(tmp_path: Path) -> None:
    alarms = AlarmRegistry(SystemClock())
    alarms.raise_alarm("outbox_salvaged", "major", "salvaged 3 events")
    async with (
        _cloud(tmp_path) as cloud,
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1), alarms=alarms) as outbox,
    ):
        uplink = Uplink(
            outbox,
            UplinkSettings(target=cloud.target, gateway_id=GATEWAY, agent_version="test"),
            Backoff(delay_ms_initial=20, delay_ms_max=200, rng=random.Random(1)),
        )
        task = asyncio.create_task(uplink.run())
        try:
            await _until(cloud.target, {"outbox_salvaged": True})
            alarms.raise_alarm("clock_skew", "minor", "gateway clock 1 h behind")
            alarms.clear("outbox_salvaged")
            await _until(cloud.target, {"outbox_salvaged": False, "clock_skew": True})
            assert uplink.statuses_sent_total >= 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_the_severity_names_match_the_contract() -> None:
    from edge.uplink.status import encode_status_message

    alarms = AlarmRegistry(SystemClock())
    for code, severity in (("a", "critical"), ("b", "major"), ("c", "minor"), ("d", "warning")):
        alarms.raise_alarm(code, severity, code)  # type: ignore[arg-type]
    message = ingest_pb2.GatewayMessage.FromString(encode_status_message(alarms.snapshot()))
    assert [ingest_pb2.AlarmSeverity.Name(alarm.severity) for alarm in message.status.alarms] == [
        "ALARM_SEVERITY_CRITICAL",
        "ALARM_SEVERITY_MAJOR",
        "ALARM_SEVERITY_MINOR",
        "ALARM_SEVERITY_WARNING",
    ]


class _OlderCloud(ingest_pb2_grpc.IngestServiceServicer):
    """A cloud from before GatewayStatus: its Welcome does not offer it, and any non-batch message breaks the stream."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.acked_through = 0

    async def Stream(self, request_iterator: Any, context: Any) -> AsyncIterator[ingest_pb2.CloudMessage]:
        async for message in request_iterator:
            body = message.WhichOneof("body")
            self.bodies.append(body)
            if body == "hello":
                yield ingest_pb2.CloudMessage(welcome=ingest_pb2.Welcome(resume_after_seq=self.acked_through))
            elif body == "batch":
                self.acked_through = message.batch.events[-1].seq
                yield ingest_pb2.CloudMessage(
                    ack=ingest_pb2.Ack(batch_id=message.batch.batch_id, committed_through_seq=self.acked_through)
                )
            else:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected an EventBatch, got {body}")


async def test_a_cloud_that_does_not_offer_status_gets_none_and_the_events_still_flow(tmp_path: Path) -> None:
    older = _OlderCloud()
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(older, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    alarms = AlarmRegistry(SystemClock())
    alarms.raise_alarm("outbox_full", "critical", "full")
    try:
        async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1), alarms=alarms) as outbox:
            await outbox.append_many([_movement(n) for n in range(10)])
            uplink = Uplink(
                outbox,
                UplinkSettings(target=f"127.0.0.1:{port}", gateway_id=GATEWAY, agent_version="test"),
                Backoff(delay_ms_initial=20, delay_ms_max=200, rng=random.Random(1)),
            )
            task = asyncio.create_task(uplink.run())
            try:
                async with asyncio.timeout(20):
                    while uplink.acked_through_seq < 10:
                        await asyncio.sleep(0.02)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await server.stop(0)
    assert set(older.bodies) == {"hello", "batch"}
    assert uplink.statuses_sent_total == 0 and uplink.sessions_total == 1
