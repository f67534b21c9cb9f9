"""Gateway alarms must end in a running agent, without a restart and without new traffic.

A site that goes quiet once the cloud drained its outbox commits nothing more, so the disk-cap alarms
must clear on the acknowledged delete itself; and `outbox_salvaged`, which no condition clears, must
expire on its own while the agent keeps running, not only at the next start.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from test_gateway_alarms import ManualClock, _movement, _sensor
from test_outbox_salvage import _filled_outbox

from edge.alarms import EXPIRING_ALARMS_MS, AlarmRegistry
from edge.clock import SystemClock
from edge.outbox import open_outbox
from edge.outbox.outbox import (
    ALARM_FULL,
    ALARM_NEAR_CAP,
    ALARM_SALVAGED,
    ALARM_SHEDDING,
    SALVAGE_ALARM_ACTIVE_MS,
    Outbox,
)
from edge.outbox.salvage import salvage_outbox

CAP = 1024 * 1024


def _delete_through(outbox: Outbox) -> Callable[[int], Awaitable[int]]:
    return outbox.delete_through


def _delete_committed(outbox: Outbox) -> Callable[[int], Awaitable[int]]:
    return lambda seq: outbox.delete_committed(seq, [])


@pytest.mark.parametrize("delete", [_delete_through, _delete_committed], ids=["delete_through", "delete_committed"])
async def test_the_near_cap_alarms_clear_when_the_cloud_drains_a_quiet_outbox(
    tmp_path: Path, delete: Callable[[Outbox], Callable[[int], Awaitable[int]]]
) -> None:
    alarms = AlarmRegistry(SystemClock())
    async with open_outbox(
        tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1), bytes_max=CAP, alarms=alarms
    ) as outbox:
        n = 0
        while not (alarms.is_active(ALARM_NEAR_CAP) and alarms.is_active(ALARM_SHEDDING)):
            assert n < 2000, "the outbox never neared its cap"
            await outbox.append_many([_sensor(k) if k % 2 else _movement(k) for k in range(n, n + 10)])
            n += 10
        assert not outbox.full, "near the cap, not at it: the case a full-only re-check missed"
        # The cloud acknowledges everything; nothing is read at the site afterwards (night, weekend).
        newest = (await outbox.stats()).newest_seq
        assert await delete(outbox)(newest) > 0
        assert await outbox.used_bytes() < 0.8 * CAP
        assert alarms.active() == []
        assert {alarm.code for alarm in alarms.snapshot()} == {ALARM_NEAR_CAP, ALARM_SHEDDING}
        assert not alarms.is_active(ALARM_FULL)


async def test_the_salvage_alarm_expires_in_an_agent_that_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    await _filled_outbox(path, events=50)
    os.truncate(path, 3 * 4096)
    clock = ManualClock(1_790_000_000_000)
    salvage_outbox(path, "test damage", clock)
    clock.ms += 60_000
    alarms = AlarmRegistry(clock)
    async with open_outbox(path, clock=clock, rng=random.Random(1), alarms=alarms):
        assert alarms.is_active(ALARM_SALVAGED)
        clock.ms = 1_790_000_000_000 + SALVAGE_ALARM_ACTIVE_MS - 1
        assert alarms.is_active(ALARM_SALVAGED)
        alarms.changed.clear()
        clock.ms += 1  # a day after the salvage, the agent still up
        assert alarms.active() == []
        assert alarms.changed.is_set(), "the uplink is woken to send the cleared alarm"
        (expired,) = alarms.snapshot()
        assert expired.code == ALARM_SALVAGED and not expired.active and "test damage" in expired.message


async def test_an_expiring_alarm_clears_on_a_timer_without_anyone_reading_the_set() -> None:
    clock = SystemClock()
    alarms = AlarmRegistry(clock)
    lifetime_ms = EXPIRING_ALARMS_MS[ALARM_SALVAGED]
    # Raised (at start) almost a day after the salvage it reports: a couple of seconds are left.
    alarms.raise_alarm(ALARM_SALVAGED, "major", "salvaged", raised_at_ms=clock.unix_ms() - lifetime_ms + 2000)
    assert alarms.is_active(ALARM_SALVAGED)
    alarms.changed.clear()
    # The uplink's wait: it reads the set only after `changed` is set.
    async with asyncio.timeout(30):
        await alarms.changed.wait()
    assert alarms.active() == []


def test_the_salvage_alarm_lasts_as_long_as_the_outbox_raises_it_across_restarts() -> None:
    assert EXPIRING_ALARMS_MS[ALARM_SALVAGED] == SALVAGE_ALARM_ACTIVE_MS
