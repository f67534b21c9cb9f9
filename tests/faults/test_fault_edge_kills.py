"""`kill -9` of the edge agent at seeded random instants while the simulated scanner scans flat out.

The scanner (hw_sim, on a real pty, ACK/NAK on, resending until acknowledged) never waits between
scans, so the agent is busy when it dies: decoding a frame, committing it (fsynced), writing the ACK,
recording the ACK, or streaming batches. Each kill comes 0.05–0.6 s after the restarted agent logged that
its outbox is open; the agent is restarted at once. At the end the cloud must hold every acknowledged
valid scan once.

A failing seed is printed; add it to `KEPT_SEEDS` to keep it as a regression case.
TALLYPORT_FAULT_SEED replays one seed; TALLYPORT_FAULT_MODE=long multiplies the kills.

Found by seed 20261129 (kept): a kill that lands while the cloud begins a batch's transaction cancels
that stream's handler with BEGIN still queued in aiosqlite's thread; the transaction opened anyway, was
never rolled back, and every later batch failed ("cannot start a transaction within a transaction")
until the cloud restarted. Fixed in cloud/store/sqlite_store.py; the second test pins it without processes.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from fault_site import AGENT_STARTED, FaultSite, assert_exactly_once, fault_seed, scaled, settle, unique_gateway_id

from cloud.store.sqlite_store import SqliteStore

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(scaled(300))]

KEPT_SEEDS = [20261129]
KILLS = scaled(50)
KILL_DELAY_S = (0.05, 0.6)
SCANS_PER_KILL = 70  # at ~75 scans/s, enough that the scanner is still busy when the last kill lands


@pytest.mark.parametrize("seed", [fault_seed(seed) for seed in KEPT_SEEDS])
async def test_edge_killed_at_random_instants_loses_and_doubles_nothing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    site = FaultSite(tmp_path, scans=KILLS * SCANS_PER_KILL, seed=seed, gateway_id=unique_gateway_id())
    kills_while_scanning = 0
    try:
        site.start_cloud()
        site.start_simulator()
        await site.wait_for_link()
        site.start_edge()
        for kill in range(KILLS):
            await site.wait_for_log("edge", AGENT_STARTED, kill + 1, timeout_s=20)
            await asyncio.sleep(rng.uniform(*KILL_DELAY_S))
            kills_while_scanning += site.processes["sim"].poll() is None
            site.kill("edge")
            site.start_edge()
        await site.wait_for_simulator(timeout_s=scaled(60))
        count = await settle(site, timeout_s=60)
    finally:
        site.stop_all()
    print(f"seed={seed}: edge SIGKILLed {KILLS} times, {kills_while_scanning} of them while the scanner was scanning")
    assert_exactly_once("edge_kill", seed, count, site)
    assert kills_while_scanning >= KILLS * 0.8, "the scanner ran out of scans before the kills were done"


async def test_a_stream_cancelled_while_its_transaction_begins_leaves_the_store_writable(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "cloud.db")
    try:

        async def batch_of_a_vanished_gateway() -> None:
            async with store.ingest_transaction():
                await asyncio.sleep(60)

        task = asyncio.create_task(batch_of_a_vanished_gateway())
        await asyncio.sleep(0)  # the task now waits on BEGIN IMMEDIATE, queued in aiosqlite's thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with store.ingest_transaction() as transaction:  # raised StoreError before the fix
            assert await transaction.stream_state("gw-1", "outbox-1") is None
    finally:
        await store.close()
