"""Clock skew of ±1 h between gateway and cloud: nothing lost or doubled, and event times kept as sent.

The agent process runs with its wall clock shifted through the fault-injection knob of edge/clock.py
(TALLYPORT_CLOCK_OFFSET_S, read once at start); the cloud and the scanner keep the host's time. A third
run steps the gateway's clock back two hours across a `kill -9` (+1 h before, -1 h after), as an NTP
correction after a reboot would. The cloud must hold every scan once, with the event time the gateway
stamped: the scanner's send time shifted by the gateway's offset, not corrected by the cloud.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc.aio
import pytest
from fault_site import (
    AGENT_STARTED,
    SCAN_LOCATION,
    FaultSite,
    assert_exactly_once,
    fault_seed,
    settle,
    unique_gateway_id,
)
from tallyport.v1 import inventory_pb2, inventory_pb2_grpc

from edge.clock import CLOCK_OFFSET_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HOUR_S = 3600
SCANS = 300
SCAN_INTERVAL_MS = 10
# How far an event time may sit from (scanner send time + gateway offset): the scan's trip through the
# pty, the intake and the commit, on a busy 2-core machine. Far below the offsets under test.
STAMPING_SLACK_S = 60


@pytest.mark.parametrize(
    "offsets_s",
    [(HOUR_S,), (-HOUR_S,), (HOUR_S, -HOUR_S)],
    ids=["gateway-1h-ahead", "gateway-1h-behind", "gateway-stepped-back-2h-across-a-restart"],
)
async def test_clock_skew_loses_and_doubles_nothing_and_event_times_are_the_gateways(
    tmp_path: Path, offsets_s: tuple[int, ...]
) -> None:
    seed = fault_seed(5901)
    site = FaultSite(
        tmp_path, scans=SCANS, seed=seed, scan_interval_ms=SCAN_INTERVAL_MS, gateway_id=unique_gateway_id()
    )
    try:
        site.start_cloud()
        site.start_simulator()
        await site.wait_for_link()
        for run, offset_s in enumerate(offsets_s):
            if run:
                await asyncio.sleep(1.5)  # mid-scan
                site.kill("edge")
            site.start_edge_with(site.gateway_config, {CLOCK_OFFSET_ENV: str(offset_s)})
            await site.wait_for_log("edge", AGENT_STARTED, run + 1, timeout_s=20)
        await site.wait_for_simulator(timeout_s=60)
        count = await settle(site, timeout_s=60)
        scans = await site.events(biz_location=SCAN_LOCATION)
        measured_offset = await _cloud_measured_offset_ms(site.cloud_port, site.gateway_id)
    finally:
        site.stop_all()
    fault = "clock_skew_" + "_then_".join(f"{offset:+d}s" for offset in offsets_s)
    assert_exactly_once(fault, seed, count, site)

    sent_s = {str(s["object_id"]): float(s["sent_unix_ms"]) / 1000 for s in site.truth_lines() if s["object_id"]}  # type: ignore[arg-type]
    skews_s = [event.event_time.ToMilliseconds() / 1000 - sent_s[event.objects[0].id] for event in scans]
    nearest = [min(offsets_s, key=lambda offset: abs(skew - offset)) for skew in skews_s]
    stray = [skew for skew, offset in zip(skews_s, nearest, strict=True) if abs(skew - offset) > STAMPING_SLACK_S]
    print(
        f"{fault}: {len(scans)} scans; event time minus scanner send time, by gateway offset: "
        + ", ".join(f"{offset:+d} s: {nearest.count(offset)} events" for offset in offsets_s)
        + f"; cloud's measured clock offset: {measured_offset if measured_offset is not None else 'not reported'} ms"
    )
    assert scans, "no scan reached the cloud"
    assert not stray, f"event times not shifted by the gateway's offset {offsets_s}: {stray[:5]} s"
    assert set(nearest) == set(offsets_s), f"not every clock setting stamped events: {set(nearest)}"
    # The cloud measures the gateway's clock at each Hello: it must report it, and see the latest offset.
    assert measured_offset is not None, "the cloud reports no clock offset for the gateway"
    assert abs(measured_offset + offsets_s[-1] * 1000) < STAMPING_SLACK_S * 1000, measured_offset


async def _cloud_measured_offset_ms(port: int, gateway_id: str) -> int | None:
    """The clock offset the cloud says it measured for the gateway; None if it reports none."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListGateways(
            inventory_pb2.ListGatewaysRequest(), timeout=5
        )
    for gateway in reply.gateways:
        if gateway.gateway_id == gateway_id and gateway.HasField("clock_offset_ms"):
            return int(gateway.clock_offset_ms)
    return None
