"""Disk pressure: the outbox reaches its cap while the cloud is unreachable.

A 1 MiB outbox is filled close to its cap with movement events and sensor samples (through the edge's real
outbox API, as a long outage would leave it), then the real agent runs with the simulated scanner scanning
flat out (ACK/NAK on, resending until acknowledged) and no cloud. The outbox must shed sensor samples first,
then, with only movements left at the cap, refuse new scans: the agent does not ACK them, so the scanner
keeps them and resends. Once the cloud starts, the uplink drains the backlog, the `outbox_shedding` and
`outbox_full` alarms are in the cloud's ListGateways (and clear once the backlog is gone), and every
movement, from the backlog and from every acknowledged scan, is in the cloud exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import grpc.aio
import pytest
from fault_site import (
    FaultSite,
    assert_exactly_once,
    backlog_event,
    backlog_object_id,
    count_delivery,
    fault_seed,
    scaled,
    unique_gateway_id,
)
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2, inventory_pb2_grpc

from edge.clock import SystemClock
from edge.outbox import open_outbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

SEED = 20261130
CAP_BYTES = 1024 * 1024  # the smallest cap the gateway config accepts
PREFILL_FRACTION = 0.86  # below SHED_AT_FRACTION: the live scans push it over
SENSOR_EVERY = 10  # one sensor sample per this many backlog events
SCANS = scaled(1500)  # far more than the free space holds, so the cap is reached while scanning


def _sensor_sample(n: int, gateway_id: str) -> events_pb2.Event:
    """A valid climate reading event, as the sensor pipeline makes it."""
    report = events_pb2.SensorReport(
        type="temperature", value=4.0 + (n % 7) / 10, uom="CEL", device_id="cold-room-probe"
    )
    report.time.GetCurrentTime()
    event = events_pb2.Event(
        gateway_id=gateway_id,
        type=events_pb2.EVENT_TYPE_OBJECT,
        read_point=events_pb2.ReadPoint(id="urn:tallyport:rp:e2e:dock-1", device_id="cold-room-probe"),
        biz_location="urn:tallyport:loc:e2e:dock-1",
        action=events_pb2.ACTION_OBSERVE,
        biz_step=events_pb2.BIZ_STEP_SENSOR_REPORTING,
        event_class=events_pb2.EVENT_CLASS_SENSOR,
        sensor_reports=[report],
    )
    event.event_time.GetCurrentTime()
    return event


async def _prefill(path: Path, gateway_id: str) -> tuple[list[str], int]:
    """Movements and sensor samples up to `PREFILL_FRACTION` of the cap; return the movement ids and samples."""
    movement_ids: list[str] = []
    samples = 0
    async with open_outbox(path, clock=SystemClock(), rng=random.Random(1), bytes_max=CAP_BYTES) as outbox:
        n = 0
        while await outbox.used_bytes() < PREFILL_FRACTION * CAP_BYTES:
            batch = []
            for _ in range(50):
                if n % SENSOR_EVERY == 0:
                    batch.append(_sensor_sample(n, gateway_id))
                    samples += 1
                else:
                    batch.append(backlog_event(n, gateway_id))
                    movement_ids.append(backlog_object_id(n))
                n += 1
            await outbox.append_many(batch)
        assert outbox.shed_total == 0, "the prefill itself must stay under the shedding threshold"
    return movement_ids, samples


async def _alarms(port: int, gateway_id: str) -> dict[str, ingest_pb2.GatewayAlarm]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListGateways(
            inventory_pb2.ListGatewaysRequest(), timeout=5
        )
    return {alarm.code: alarm for state in reply.gateways if state.gateway_id == gateway_id for alarm in state.alarms}


async def _wait_alarms(port: int, gateway_id: str, done: str, timeout_s: float) -> dict[str, ingest_pb2.GatewayAlarm]:
    """Poll ListGateways until `done` ("listed": outbox_full is there; "cleared": and no alarm is active)."""
    deadline = time.monotonic() + timeout_s
    alarms: dict[str, ingest_pb2.GatewayAlarm] = {}
    while time.monotonic() < deadline:
        try:
            alarms = await _alarms(port, gateway_id)
        except grpc.aio.AioRpcError:
            alarms = {}
        if "outbox_full" in alarms and (done == "listed" or not any(a.active for a in alarms.values())):
            return alarms
        await asyncio.sleep(0.1)
    return alarms


async def _movements_settled(site: FaultSite, expected: Counter[str], timeout_s: float) -> list[events_pb2.Event]:
    """The cloud's movement events once it holds every expected id (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        movements = [e for e in await site.events() if e.event_class != events_pb2.EVENT_CLASS_SENSOR]
        held = Counter(obj.id for event in movements for obj in event.objects)
        if all(held[i] >= n for i, n in expected.items()) or time.monotonic() > deadline:
            return movements
        await asyncio.sleep(1.0)


async def test_at_the_disk_cap_samples_are_shed_first_and_no_movement_is_lost(tmp_path: Path) -> None:
    seed = fault_seed(SEED)
    site = FaultSite(tmp_path, scans=SCANS, seed=seed, scan_interval_ms=0, gateway_id=unique_gateway_id())
    config = site.gateway_config.read_text()
    site.gateway_config.write_text(config.replace("[outbox]\n", f"[outbox]\nbytes_max = {CAP_BYTES}\n", 1))
    try:
        backlog_ids, samples = await _prefill(tmp_path / "outbox.db", site.gateway_id)
        site.start_simulator()
        await site.wait_for_link()
        site.start_edge()  # the cloud is not running: nothing listens on its port
        await site.wait_for_log("edge", "sensor samples downsampled", 1, timeout_s=120)
        await site.wait_for_log("edge", "outbox full: refusing new events", 1, timeout_s=120)
        scans_when_full = len(site.truth_lines())
        assert site.processes["sim"].poll() is None, "the scanner finished before the outbox was full"

        site.start_cloud()
        listed = await _wait_alarms(site.cloud_port, site.gateway_id, "listed", timeout_s=30)
        await site.wait_for_simulator(timeout_s=240)
        truth = site.truth_lines()
        expected = Counter(backlog_ids) + Counter(
            str(s["object_id"]) for s in truth if s["valid"] and s["object_id"] and s["outcome"] == "acked"
        )
        movements = await _movements_settled(site, expected, timeout_s=90)
        sensors_in_cloud = sum(1 for e in await site.events() if e.event_class == events_pb2.EVENT_CLASS_SENSOR)
        cleared = await _wait_alarms(site.cloud_port, site.gateway_id, "cleared", timeout_s=30)
    finally:
        site.stop_all()

    count = count_delivery(expected, movements)
    print(
        f"seed={seed}: prefill {len(backlog_ids)} movements + {samples} samples; outbox full after "
        f"{scans_when_full} scans; {sensors_in_cloud} of {samples} samples reached the cloud"
    )
    assert_exactly_once("disk_pressure", seed, count, site)
    assert all(s["outcome"] == "acked" for s in truth if s["valid"]), "a refused scan must be resent, not given up"
    assert sensors_in_cloud < samples, "sensor samples are what is shed"
    assert listed.get("outbox_shedding") is not None, f"no outbox_shedding alarm in the cloud: {listed}"
    assert listed["outbox_full"].severity == ingest_pb2.ALARM_SEVERITY_CRITICAL
    assert not any(alarm.active for alarm in cleared.values()), f"alarms still active after the drain: {cleared}"
