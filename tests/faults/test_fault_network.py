"""Network faults between the edge agent and the cloud, each injected into real processes and counted.

Every run: a backlog written through the edge's outbox API before the agent starts (so batches are in
flight from the first second), plus the simulated scanner scanning live throughout; the fault is
injected while both flow. Then the cloud must hold every produced object exactly once.

- the cloud SIGKILLed and restarted at seeded random instants while the gateway streams to it
  (tests/e2e kills it twice at fixed instants; this kills it more often, mid-drain);
- through `tcp_proxy.FaultProxy`: a cut (drop), stalls shorter and longer than the ack timeout,
  resets (RST) of the live connection, and a slow link;
- through `grpc_mitm.IngestMitm`: batches the network delivers twice, acks delivered out of order.
  The edge takes acks as cumulative, so neither fault may end its session: the uplink must stay on
  one stream (a stale or repeated ack is ignored, a later ack settles the batches before it).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from fault_site import (
    AGENT_READY,
    FaultSite,
    assert_exactly_once,
    fault_seed,
    scaled,
    settle,
    unique_gateway_id,
)
from grpc_mitm import IngestMitm
from tcp_proxy import FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BACKLOG_EVENTS = 5000
SCAN_INTERVAL_MS = 10
SCANS_PER_S = 70  # measured at SCAN_INTERVAL_MS on the 2-core machine; sizes the scanning to outlast each fault
UPLINK_ACK_TIMEOUT_S = 3.0  # FaultSite's default uplink ack_timeout_ms
CLOUD_READY = "cloud server listening"
EDGE_CONNECTED = "gateway connected"  # the cloud's log line for a Welcome sent

Inject = Callable[[FaultSite, random.Random], Awaitable[None]]


async def _run(site: FaultSite, inject: Inject, seed: int) -> None:
    """Start cloud, scanner and agent, inject the fault while they stream, let the scanner finish."""
    await site.write_backlog(BACKLOG_EVENTS)
    site.start_cloud()
    await site.wait_for_log("cloud", CLOUD_READY, 1, timeout_s=20)
    site.start_simulator()
    await site.wait_for_link()
    site.start_edge()
    await site.wait_for_log("edge", AGENT_READY, 1, timeout_s=20)
    await inject(site, random.Random(seed))
    await site.wait_for_simulator(timeout_s=scaled(60))


async def test_cloud_killed_at_random_instants_mid_stream(tmp_path: Path) -> None:
    seed = fault_seed(5101)
    kills = scaled(6)
    site = FaultSite(
        tmp_path,
        scans=_scans_for(kills * 1.5),
        seed=seed,
        scan_interval_ms=SCAN_INTERVAL_MS,
        gateway_id=unique_gateway_id(),
    )

    async def kill_the_cloud(site: FaultSite, rng: random.Random) -> None:
        for kill in range(kills):
            # Kill while the gateway streams: shortly after it (re)connected, while batches flow.
            await site.wait_for_log("cloud", EDGE_CONNECTED, kill + 1, timeout_s=30)
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            site.kill("cloud")
            await asyncio.sleep(rng.uniform(0.0, 0.5))  # the gateway keeps scanning into its outbox
            site.start_cloud()

    try:
        await _run(site, kill_the_cloud, seed)
        count = await settle(site, timeout_s=60)
    finally:
        site.stop_all()
    assert_exactly_once("cloud_kill", seed, count, site)


def _scans_for(seconds: float) -> int:
    """Enough scans to keep the scanner busy for `seconds`: faults hit live traffic, not just the backlog."""
    return int(seconds * SCANS_PER_S)


async def _through_proxy(
    tmp_path: Path,
    fault: str,
    seed: int,
    inject: Callable[[FaultProxy, random.Random], Awaitable[None]],
    fault_s: float,
) -> FaultProxy:
    site = FaultSite(
        tmp_path,
        scans=_scans_for(fault_s + 1),
        seed=seed,
        scan_interval_ms=SCAN_INTERVAL_MS,
        gateway_id=unique_gateway_id(),
    )
    async with FaultProxy(site.cloud_port) as proxy:
        site.route_uplink_through(proxy.port)

        async def through(site: FaultSite, rng: random.Random) -> None:
            await inject(proxy, rng)

        try:
            await _run(site, through, seed)
            proxy.set_mode("pass")
            count = await settle(site, timeout_s=60)
        finally:
            site.stop_all()
    assert_exactly_once(fault, seed, count, site)
    print(f"fault={fault} proxy {proxy.counters}")
    return proxy


async def test_network_cut_then_restored(tmp_path: Path) -> None:
    async def cut(proxy: FaultProxy, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        proxy.set_mode("drop")
        await asyncio.sleep(4.0)  # longer than the 3 s ack timeout: the gateway gives up on the stream
        proxy.set_mode("pass")

    proxy = await _through_proxy(tmp_path, "proxy_drop", fault_seed(5201), cut, fault_s=4.5)
    assert proxy.counters.bytes_dropped > 0, "the cut never swallowed anything"
    # The gateway noticed the cut by itself (a batch went unacknowledged), not only when the link came back.
    assert "no ack within" in (tmp_path / "edge.log").read_text(), "the uplink never timed out during the cut"


@pytest.mark.parametrize("stall_s", [1.0, 4.0], ids=["shorter-than-ack-timeout", "longer-than-ack-timeout"])
async def test_network_stalls(tmp_path: Path, stall_s: float) -> None:
    async def stall(proxy: FaultProxy, rng: random.Random) -> None:
        for _ in range(2):
            await asyncio.sleep(rng.uniform(0.1, 0.6))
            proxy.set_mode("stall", stall_s=stall_s)
            await asyncio.sleep(stall_s)

    proxy = await _through_proxy(tmp_path, f"proxy_stall_{stall_s:g}s", fault_seed(5301), stall, 2 * stall_s + 1)
    assert proxy.counters.stalls_total == 2
    edge_log = (tmp_path / "edge.log").read_text()
    if stall_s < UPLINK_ACK_TIMEOUT_S:  # a pause the ack timeout tolerates costs no reconnect
        assert edge_log.count(AGENT_READY) == 1, "the uplink reconnected over a short stall:\n" + edge_log[-3000:]
    else:  # a longer one is given up on, and the stream resumes where the cloud says
        assert "no ack within" in edge_log, "the uplink never timed out during the stall"


async def test_connections_reset_at_random_instants(tmp_path: Path) -> None:
    resets = scaled(8)

    async def reset(proxy: FaultProxy, rng: random.Random) -> None:
        for _ in range(resets):
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            proxy.reset_all()

    proxy = await _through_proxy(tmp_path, "proxy_reset", fault_seed(5401), reset, fault_s=resets * 0.3)
    assert proxy.counters.resets_total >= resets // 2, "most resets should have found a live connection"


async def test_slow_link(tmp_path: Path) -> None:
    async def slow(proxy: FaultProxy, rng: random.Random) -> None:
        proxy.set_mode("slow", latency_ms=rng.uniform(20, 60), bytes_per_s=256 * 1024)

    proxy = await _through_proxy(tmp_path, "proxy_slow", fault_seed(5501), slow, fault_s=3)
    assert proxy.counters.bytes_to_upstream > BACKLOG_EVENTS * 100, "the backlog did not cross the slow link"


async def _through_mitm(tmp_path: Path, fault: str, seed: int, **faults: float) -> IngestMitm:
    site = FaultSite(
        tmp_path, scans=_scans_for(3), seed=seed, scan_interval_ms=SCAN_INTERVAL_MS, gateway_id=unique_gateway_id()
    )
    async with IngestMitm(site.cloud_port, seed, **faults) as mitm:
        site.route_uplink_through(mitm.port)

        async def nothing_more(site: FaultSite, rng: random.Random) -> None:
            return None

        try:
            await _run(site, nothing_more, seed)
            count = await settle(site, timeout_s=60)
        finally:
            site.stop_all()
    assert_exactly_once(fault, seed, count, site)
    print(f"fault={fault} mitm {mitm.counters}")
    # Acks are cumulative: neither a repeated nor a reordered ack is a reason to drop the stream.
    assert site.log("edge").count(AGENT_READY) == 1, "the uplink reconnected:\n" + site.log("edge")[-3000:]
    return mitm


async def test_batches_delivered_twice(tmp_path: Path) -> None:
    mitm = await _through_mitm(tmp_path, "mitm_duplicate_batch", fault_seed(5601), duplicate_batches=0.3)
    assert mitm.counters.batches_duplicated > 0


async def test_acks_delivered_out_of_order(tmp_path: Path) -> None:
    mitm = await _through_mitm(tmp_path, "mitm_reorder_acks", fault_seed(5701), reorder_acks=0.5)
    assert mitm.counters.acks_reordered > 0
