"""Clock skew between gateway and cloud: measured per gateway, listed, and never a reason to refuse.

The cloud's clock is injected (`CloudServer(clock=...)`) and the gateway's times are chosen, so
every offset is exact: offset = cloud time - gateway time, in ms (positive: the gateway is behind).
Runs on each store (the offset is a column of gateway_streams, migration 6).
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import ingest_pb2, inventory_pb2, inventory_pb2_grpc

from cloud.server import CloudServer
from edge.backoff import Backoff
from edge.outbox import open_outbox
from edge.uplink import Uplink, UplinkSettings
from tests.cloud.cloud_testkit import DOCK, STORAGE, cloud_config, item, make_event
from tests.cloud.gateway_clients import (
    all_events,
    batch_bytes,
    gateway_states,
    hello_bytes,
    quarantine_entries,
    raw_stream,
    read_message,
)

HOUR_MS = 3_600_000
# 2026-11-29T10:00:00Z, the cloud's "now" in these tests.
CLOUD_NOW_MS = 1_795_946_400_000
REPO_ROOT = Path(__file__).resolve().parents[2]


class CloudClock:
    """The cloud's clock, set by the test (microseconds, as `cloud.timestamps.Clock`)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms * 1000


class GatewayClock:
    """An edge clock (`edge.clock.Clock`) standing still at `unix_ms`."""

    def __init__(self, unix_ms: int) -> None:
        self.unix_ms_now = unix_ms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.unix_ms_now / 1000, UTC)

    def unix_ms(self) -> int:
        return self.unix_ms_now


def stamp(unix_ms: int) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromMilliseconds(unix_ms)
    return timestamp


@pytest.fixture
def cloud_clock() -> CloudClock:
    return CloudClock(CLOUD_NOW_MS)


@pytest.fixture
async def clocked_cloud(store_section: dict[str, Any], cloud_clock: CloudClock) -> AsyncIterator[CloudServer]:
    async with CloudServer(cloud_config(store_section), clock=cloud_clock) as server:
        yield server


@pytest.fixture
async def clocked_channel(clocked_cloud: CloudServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(clocked_cloud.target) as opened:
        yield opened


async def connect(channel: aio.Channel, gateway_id: str, gateway_time_ms: int | None) -> Any:
    call = raw_stream(channel)
    fields = {} if gateway_time_ms is None else {"gateway_time": stamp(gateway_time_ms)}
    await call.write(hello_bytes(gateway_id, **fields))
    assert (await read_message(call)).WhichOneof("body") == "welcome"
    return call


async def offsets(channel: aio.Channel) -> dict[str, int | None]:
    return {
        gateway: state.clock_offset_ms if state.HasField("clock_offset_ms") else None
        for (gateway, _), state in (await gateway_states(channel)).items()
    }


async def test_the_hello_gives_each_gateway_its_offset_in_list_gateways(clocked_channel: aio.Channel) -> None:
    calls = [
        await connect(clocked_channel, "gw-behind", CLOUD_NOW_MS - HOUR_MS),
        await connect(clocked_channel, "gw-ahead", CLOUD_NOW_MS + HOUR_MS + 250),
        await connect(clocked_channel, "gw-old-agent", None),
        await connect(clocked_channel, "gw-rtc-reset", 0),  # a gateway that booted in 1970 is measured too
    ]
    assert await offsets(clocked_channel) == {
        "gw-behind": HOUR_MS,
        "gw-ahead": -HOUR_MS - 250,
        "gw-old-agent": None,
        "gw-rtc-reset": CLOUD_NOW_MS,
    }
    for call in calls:
        call.cancel()


def timed_batch(batch_id: int, seq: int, gateway_time_ms: int) -> bytes:
    message = ingest_pb2.GatewayMessage()
    message.ParseFromString(batch_bytes(batch_id, [make_event(seq, gateway_id="gw-1")]))
    message.batch.gateway_time.CopyFrom(stamp(gateway_time_ms))
    return message.SerializeToString()


async def test_batches_keep_a_running_estimate_the_smallest_recent_sample(
    clocked_channel: aio.Channel, cloud_clock: CloudClock
) -> None:
    """Transit only adds to a sample, so the estimate is the smallest of the stream's recent ones."""
    call = await connect(clocked_channel, "gw-1", CLOUD_NOW_MS - HOUR_MS - 500)  # sample 3600.5 s
    observed = []
    for batch_id, sample_ms in enumerate([HOUR_MS + 100, HOUR_MS + 900, HOUR_MS + 300], start=1):
        cloud_clock.now_ms += 1000
        await call.write(timed_batch(batch_id, batch_id, cloud_clock.now_ms - sample_ms))
        assert (await read_message(call)).ack.committed_through_seq == batch_id
        observed.append((await offsets(clocked_channel))["gw-1"])
    assert observed == [HOUR_MS + 100, HOUR_MS + 100, HOUR_MS + 100]
    call.cancel()
    # A new stream starts a new estimate: the gateway's clock may have been corrected meanwhile.
    cloud_clock.now_ms += 1000
    call = await connect(clocked_channel, "gw-1", cloud_clock.now_ms - 20)
    assert (await offsets(clocked_channel))["gw-1"] == 20
    call.cancel()


async def test_the_offset_survives_a_restart_and_a_hello_without_time_keeps_it(
    store_section: dict[str, Any], cloud_clock: CloudClock
) -> None:
    config = cloud_config(store_section)
    async with CloudServer(config, clock=cloud_clock) as server, aio.insecure_channel(server.target) as channel:
        (await connect(channel, "gw-1", CLOUD_NOW_MS - HOUR_MS)).cancel()
    async with CloudServer(config, clock=cloud_clock) as server, aio.insecure_channel(server.target) as channel:
        assert (await offsets(channel))["gw-1"] == HOUR_MS
        call = await connect(channel, "gw-1", None)  # an older agent: nothing new measured
        assert (await offsets(channel))["gw-1"] == HOUR_MS
        call.cancel()


@pytest.mark.parametrize("skew_ms", [HOUR_MS, -HOUR_MS], ids=["ahead-1h", "behind-1h"])
async def test_a_gateway_skewed_by_an_hour_has_every_event_stored_and_applied_in_seq_order(
    clocked_channel: aio.Channel, skew_ms: int
) -> None:
    inventory = inventory_pb2_grpc.InventoryServiceStub(clocked_channel)
    gateway_now_s = (CLOUD_NOW_MS + skew_ms) // 1000
    pallet = item(serial="4242")
    events = [
        make_event(1, gateway_id="gw-1", time_s=gateway_now_s, objects=[pallet], biz_location=DOCK),
        make_event(2, gateway_id="gw-1", time_s=gateway_now_s + 5, objects=[pallet], biz_location=STORAGE),
        *[make_event(seq, gateway_id="gw-1", time_s=gateway_now_s + seq) for seq in range(3, 21)],
    ]
    call = await connect(clocked_channel, "gw-1", CLOUD_NOW_MS + skew_ms)
    await call.write(batch_bytes(1, events))
    ack = (await read_message(call)).ack
    call.cancel()
    assert (ack.committed_through_seq, ack.accepted, list(ack.rejects)) == (20, 20, [])
    assert sorted(event.seq for event in await all_events(clocked_channel, "gw-1")) == list(range(1, 21))
    assert await quarantine_entries(clocked_channel) == []
    position = await inventory.GetPosition(inventory_pb2.GetPositionRequest(id=pallet.id))
    assert position.biz_location == STORAGE  # the later move, by seq and by the gateway's own clock
    assert (await offsets(clocked_channel))["gw-1"] == -skew_ms


async def test_an_event_beyond_the_configured_bound_ahead_is_quarantined_with_the_reason(
    store_section: dict[str, Any], cloud_clock: CloudClock
) -> None:
    config = cloud_config(store_section, max_event_time_ahead_ms=60_000)
    now_s = CLOUD_NOW_MS // 1000
    async with CloudServer(config, clock=cloud_clock) as server, aio.insecure_channel(server.target) as channel:
        call = await connect(channel, "gw-1", CLOUD_NOW_MS + HOUR_MS)
        await call.write(
            batch_bytes(
                1,
                [
                    make_event(1, gateway_id="gw-1", time_s=now_s + 60),
                    make_event(2, gateway_id="gw-1", time_s=now_s + 61),
                ],
            )
        )
        ack = (await read_message(call)).ack
        call.cancel()
        assert (ack.committed_through_seq, ack.accepted) == (2, 1)
        (reject,) = ack.rejects
        assert (reject.seq, reject.code) == (2, ingest_pb2.REJECT_CODE_INVALID)
        assert reject.reason == (
            "event_time is 0 h 01 min 01 s ahead of the cloud's clock, beyond the 0 h 01 min 00 s allowed "
            "([ingest].max_event_time_ahead_ms = 60000): is the gateway's clock wrong?"
        )
        (entry,) = await quarantine_entries(channel)
        assert (entry.seq, entry.reason) == (2, reject.reason)  # kept, with its reason: never dropped


async def test_a_real_edge_uplink_with_its_clock_an_hour_ahead(
    tmp_path: Path, store_section: dict[str, Any], cloud_clock: CloudClock
) -> None:
    gateway_clock = GatewayClock(CLOUD_NOW_MS + HOUR_MS)
    async with (
        open_outbox(tmp_path / "outbox.db", clock=gateway_clock, rng=random.Random(5)) as outbox,
        CloudServer(cloud_config(store_section), clock=cloud_clock) as server,
        aio.insecure_channel(server.target) as channel,
    ):
        events = [make_event(1, gateway_id="gw-edge", time_s=gateway_clock.unix_ms() // 1000) for _ in range(50)]
        for n, event in enumerate(events):
            event.objects[0].CopyFrom(item(serial=str(7000 + n)))
            event.ClearField("event_id")
            event.ClearField("seq")
        await outbox.append_many(events)
        settings = UplinkSettings(target=server.target, gateway_id="gw-edge", agent_version="test")
        uplink = Uplink(
            outbox, settings, Backoff(delay_ms_initial=20, delay_ms_max=200, rng=random.Random(1)), gateway_clock
        )
        task = asyncio.create_task(uplink.run())
        try:
            async with asyncio.timeout(20):
                while uplink.acked_through_seq < 50:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        stored = await all_events(channel, "gw-edge")
        assert len(stored) == len({event.event_id for event in stored}) == 50
        assert await quarantine_entries(channel) == []
        assert (await offsets(channel))["gw-edge"] == -HOUR_MS


async def test_cli_gateways_shows_the_clock_offset(clocked_cloud: CloudServer, clocked_channel: aio.Channel) -> None:
    calls = [
        await connect(clocked_channel, "gw-behind", CLOUD_NOW_MS - HOUR_MS - 12),
        await connect(clocked_channel, "gw-unknown", None),
    ]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud.cli",
        "gateways",
        "--server",
        clocked_cloud.target,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    for call in calls:
        call.cancel()
    assert process.returncode == 0, err.decode()
    header, *rows = out.decode().splitlines()
    column = header.split().index("CLOCK_OFFSET")
    assert {row.split()[0]: row.split()[column] for row in rows} == {"gw-behind": "+3600.012s", "gw-unknown": "-"}
