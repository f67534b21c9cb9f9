"""A long outage: the cloud unreachable while a big backlog waits in the outbox, then the drain.

The backlog (200k events in the short mode) is committed through the edge's real outbox API before the
agent starts, standing in for hours of reads while the network was down (a scanner would need hours to
make them). The agent then starts behind a proxy that black-holes the uplink, the simulated scanner keeps
scanning into the same outbox, and the network comes back. Everything must reach the cloud exactly once.

Printed, not asserted (timings belong to bench/): the fill rate, the drain rate, and how long the live
scans made during the drain took to become visible in the cloud.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest
from fault_site import (
    SCAN_LOCATION,
    FaultSite,
    assert_exactly_once,
    count_delivery,
    events_stored,
    fault_seed,
    scaled,
    unique_gateway_id,
)
from tcp_proxy import FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

BACKLOG_EVENTS = scaled(200_000)
OUTAGE_S = 2.0  # the agent runs cut off for this long before the network returns, scanning into its outbox
SCAN_INTERVAL_MS = 20
LIVE_SCANS = 500  # at ~40 scans/s: the scanner keeps scanning through the outage and most of the drain
POLL_S = 0.2


async def test_backlog_drains_exactly_once_after_a_long_outage_and_live_scans_still_arrive(tmp_path: Path) -> None:
    seed = fault_seed(5801)
    site = FaultSite(
        tmp_path,
        scans=LIVE_SCANS,
        seed=seed,
        scan_interval_ms=SCAN_INTERVAL_MS,
        batch_events_max=500,
        gateway_id=unique_gateway_id(),
    )
    fill_s = await site.write_backlog(BACKLOG_EVENTS)
    print(f"fault=outage backlog of {BACKLOG_EVENTS} events committed in {fill_s:.1f} s")
    first_seen_s: dict[str, float] = {}  # live object id -> wall time the cloud first listed it
    async with FaultProxy(site.cloud_port) as proxy:
        site.route_uplink_through(proxy.port)
        proxy.set_mode("drop")
        try:
            site.start_cloud()
            site.start_simulator()
            await site.wait_for_link()
            site.start_edge()
            await asyncio.sleep(OUTAGE_S)
            assert await events_stored(site.cloud_port, site.gateway_id) == 0, "the outage let events through"
            proxy.set_mode("pass")
            restored, restored_unix_s = time.monotonic(), time.time()
            drained_s = await _drain(site, first_seen_s, timeout_s=scaled(300))
            await site.wait_for_simulator(timeout_s=60)
            while time.monotonic() - restored < drained_s + 30 and len(first_seen_s) < len(_scanned(site)):
                await _note_live_arrivals(site, first_seen_s)  # the scans made after the backlog drained
                await asyncio.sleep(POLL_S)
            count = count_delivery(site.expected_ids(), await site.events())
        finally:
            site.stop_all()
    rate = BACKLOG_EVENTS / drained_s
    print(f"fault=outage drain: {BACKLOG_EVENTS} backlog events in {drained_s:.1f} s = {rate:,.0f} events/s")
    _report_live_latency(site, first_seen_s)
    during_drain = [sent for sent in _scanned(site).values() if restored_unix_s <= sent <= restored_unix_s + drained_s]
    print(f"fault=outage {len(during_drain)} valid scans were made while the backlog drained")
    assert_exactly_once("outage_drain", seed, count, site)
    assert during_drain, "no live scan was made during the drain; the run proves nothing about them"
    assert proxy.counters.bytes_dropped > 0 or proxy.counters.connections_total > 1, "the outage cut nothing"


async def _drain(site: FaultSite, first_seen_s: dict[str, float], timeout_s: float) -> float:
    """Seconds until the cloud holds the whole backlog; notes live scans as they show up meanwhile.

    The cloud's counter includes the live scans, which are not backlog: they are subtracted. The total is
    read first and the scans after it, so a scan stored in between is subtracted too (the backlog is never
    overcounted, and the drain never declared early).
    """
    started = time.monotonic()
    while True:
        stored = await events_stored(site.cloud_port, site.gateway_id)
        live = await _note_live_arrivals(site, first_seen_s)
        if stored - live >= BACKLOG_EVENTS:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, "the backlog did not drain\n" + site.log("edge")[-3000:]
        await asyncio.sleep(POLL_S)


async def _note_live_arrivals(site: FaultSite, first_seen_s: dict[str, float]) -> int:
    """Note when each live scan was first listed in the cloud; return how many scan events it holds."""
    now_s = time.time()
    scans = await site.events(biz_location=SCAN_LOCATION)
    for event in scans:
        for identified in event.objects:
            first_seen_s.setdefault(identified.id, now_s)
    return len(scans)


def _scanned(site: FaultSite) -> dict[str, float]:
    """Valid scans: object id -> when the scanner first sent it (Unix seconds)."""
    return {
        str(scan["object_id"]): float(scan["sent_unix_ms"]) / 1000  # type: ignore[arg-type]
        for scan in site.truth_lines()
        if scan["valid"] and scan["object_id"]
    }


def _report_live_latency(site: FaultSite, first_seen_s: dict[str, float]) -> None:
    scanned = _scanned(site)
    latencies_s = sorted(first_seen_s[i] - sent for i, sent in scanned.items() if i in first_seen_s)
    if not latencies_s:
        print("fault=outage live scans: none seen in the cloud")
        return
    print(
        f"fault=outage live scans made during the outage and the drain: {len(latencies_s)} of {len(scanned)} seen; "
        f"scan -> listed in the cloud: p50 {statistics.median(latencies_s):.2f} s, max {latencies_s[-1]:.2f} s "
        f"(polled every {POLL_S:g} s; scans made during the outage wait for it to end, later ones take the live lane)"
    )
