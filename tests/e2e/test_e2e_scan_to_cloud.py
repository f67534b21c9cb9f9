"""End to end with the three programs as processes: every scan the simulator sends is in the cloud exactly once.

Faults are real: the gateway agent and the cloud are SIGKILLed mid-stream and restarted.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from site_processes import Site, Tally, wait_until_settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _assert_exactly_once(result: Tally, site: Site) -> None:
    print(result.summary())
    logs = "\n--- edge ---\n" + site.log("edge")[-4000:] + "\n--- cloud ---\n" + site.log("cloud")[-2000:]
    assert result.lost == [], f"lost: {result.lost}\n{result.summary()}{logs}"
    assert result.duplicated == [], f"duplicated: {result.duplicated}\n{result.summary()}{logs}"
    assert result.stored_quantity == result.expected_quantity, result.summary() + logs
    assert result.expected_objects, "the scenario produced no serialised scans; the test proves nothing"


async def test_every_scan_reaches_the_cloud_exactly_once(tmp_path: Path) -> None:
    site = Site(tmp_path, scans=40)
    try:
        site.start_cloud()
        site.start_simulator()
        await site.wait_for_link()
        site.start_edge()
        await site.wait_for_simulator(timeout_s=60)
        result = await wait_until_settled(site, timeout_s=20)
    finally:
        site.stop_all()
    _assert_exactly_once(result, site)
    assert result.rejected_scans > 0, "the scenario should include bad labels"


async def test_gateway_killed_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = 20261129
    rng = random.Random(seed)
    site = Site(tmp_path, scans=60, seed=seed)
    kills = 0
    try:
        site.start_cloud()
        site.start_simulator()
        await site.wait_for_link()
        site.start_edge()
        while site.processes["sim"].poll() is None and kills < 4:
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            site.kill("edge")
            kills += 1
            site.start_edge()
        await site.wait_for_simulator(timeout_s=90)
        result = await wait_until_settled(site, timeout_s=30)
    finally:
        site.stop_all()
    print(f"seed {seed}: gateway SIGKILLed {kills} times")
    assert kills >= 2, "the simulator finished before the faults could be injected"
    _assert_exactly_once(result, site)


async def test_cloud_killed_and_restarted_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path, scans=50)
    try:
        site.start_cloud()
        site.start_simulator()
        await site.wait_for_link()
        site.start_edge()
        await asyncio.sleep(0.8)
        site.kill("cloud")
        await asyncio.sleep(1.0)  # the gateway keeps scanning into its outbox meanwhile
        site.start_cloud()
        await asyncio.sleep(0.8)
        site.kill("cloud")
        site.start_cloud()
        await site.wait_for_simulator(timeout_s=60)
        result = await wait_until_settled(site, timeout_s=30)
    finally:
        site.stop_all()
    _assert_exactly_once(result, site)
