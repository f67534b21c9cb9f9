"""Fresh events overtake a backlog (issue 5): the uplink's live lane against the real cloud over a real socket.

Every test runs the real outbox; most run the real aggregator (SQLite store), whose database is read afterwards
to see in which order events were committed. The old-cloud test uses a stand-in servicer that answers exactly
as a cloud without committed ranges did (its Welcome has no `accepts_ranges`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
from tallyport.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc, inventory_pb2, inventory_pb2_grpc

from cloud.config import CloudConfig
from cloud.server import CloudServer
from edge.backoff import Backoff
from edge.clock import SystemClock
from edge.outbox import Outbox, open_outbox
from edge.uplink import Uplink, UplinkSettings
from edge.uplink.lanes import Lanes
from edge.uplink.wire import encode_batch_message

GATEWAY = "gw-ranges"
FILL_CHUNK = 2000


def _config(tmp_path: Path, port: int = 0, **ingest: int) -> CloudConfig:
    return CloudConfig.model_validate(
        {
            "server": {"listen": f"127.0.0.1:{port}", "shutdown_grace_ms": 200},
            "store": {"path": str(tmp_path / "c.db")},
            "ingest": ingest,
        }
    )


def _event(n: int) -> events_pb2.Event:
    event = events_pb2.Event(
        gateway_id=GATEWAY,
        type=events_pb2.EVENT_TYPE_OBJECT,
        action=events_pb2.ACTION_OBSERVE,
        biz_step=events_pb2.BIZ_STEP_RECEIVING,
        biz_location="urn:tallyport:loc:t:dock-1",
        read_point=events_pb2.ReadPoint(id="urn:tallyport:rp:t:dock-1", device_id="scanner0"),
    )
    event.event_time.GetCurrentTime()
    event.objects.append(events_pb2.IdentifiedObject(id=f"https://id.gs1.org/01/09501101530003/21/S{n}"))
    return event


async def _fill(outbox: Outbox, count: int) -> None:
    for start in range(0, count, FILL_CHUNK):
        await outbox.append_many([_event(n) for n in range(start, min(start + FILL_CHUNK, count))])


def _uplink(outbox: Outbox, target: str, **settings: int) -> Uplink:
    return Uplink(
        outbox,
        UplinkSettings(target=target, gateway_id=GATEWAY, agent_version="test", **settings),
        Backoff(delay_ms_initial=20, delay_ms_max=200, rng=random.Random(1)),
    )


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[Uplink]:
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _wait_acked(uplink: Uplink, seq: int, timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while uplink.acked_through_seq < seq:
            await asyncio.sleep(0.01)


async def _wait_deleted(outbox: Outbox, seq: int, timeout_s: float = 60) -> None:
    """Until the outbox no longer holds `seq` (the cloud acknowledged it as committed)."""
    async with asyncio.timeout(timeout_s):
        while True:
            rows = await outbox.read_after(seq - 1, 1)
            if not rows or rows[0][0] != seq:
                return
            await asyncio.sleep(0.01)


async def _gateway(target: str) -> inventory_pb2.GatewayState:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListGateways(
            inventory_pb2.ListGatewaysRequest(), timeout=5
        )
    (state,) = [g for g in reply.gateways if g.gateway_id == GATEWAY]
    return state


def _cloud_rows(tmp_path: Path, sql: str) -> list[tuple[int, ...]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "c.db")) as db:
        return [tuple(row) for row in db.execute(sql)]


async def test_a_fresh_event_is_committed_long_before_a_20k_backlog_is_drained(tmp_path: Path) -> None:
    backlog = 20_000
    async with (
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_config(tmp_path)) as cloud,
    ):
        await _fill(outbox, backlog)
        async with running(_uplink(outbox, cloud.target, batch_events_max=200, unacked_batches_max=4)) as uplink:
            await _wait_acked(uplink, 1)  # the drain has begun
            fresh = await outbox.append(_event(backlog))
            await _wait_acked(uplink, fresh)
        state = await _gateway(cloud.target)
        assert (state.committed_through_seq, state.events_stored, list(state.gaps)) == (backlog + 1, backlog + 1, [])
        assert (await outbox.stats()).events == 0
        assert uplink.live_batches_sent_total >= 1
    committed_at = dict(_cloud_rows(tmp_path, "SELECT seq, received_at_us FROM events"))
    assert sorted(committed_at) == list(range(1, backlog + 2))  # each seq once: nothing lost, nothing doubled
    after_fresh = sum(1 for seq, at in committed_at.items() if seq <= backlog and at > committed_at[fresh])
    assert after_fresh > backlog // 2, f"only {after_fresh} backlog events were committed after the fresh one"
    assert _cloud_rows(tmp_path, "SELECT duplicates, committed_ranges FROM gateway_streams") == [(0, "")]


async def test_a_reconnect_mid_drain_resumes_below_the_committed_ranges_without_resending_them(
    tmp_path: Path,
) -> None:
    backlog = 20_000
    async with (
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_config(tmp_path)) as cloud,
    ):
        await _fill(outbox, backlog)
        async with running(_uplink(outbox, cloud.target, batch_events_max=100, unacked_batches_max=2)) as first:
            await _wait_acked(first, 1)
            fresh = await outbox.append(_event(backlog))
            await _wait_deleted(outbox, fresh)
        assert (await outbox.stats()).events > 0  # stopped mid-drain
        ((ranges,),) = _cloud_rows(tmp_path, "SELECT committed_ranges FROM gateway_streams")
        assert ranges, "the first session left no committed range to resume around"
        more = await outbox.append_many([_event(n) for n in range(backlog + 1, backlog + 51)])
        async with running(_uplink(outbox, cloud.target, batch_events_max=100, unacked_batches_max=2)) as second:
            await _wait_acked(second, more[-1])
        total = backlog + 51
        state = await _gateway(cloud.target)
        assert (state.committed_through_seq, state.events_stored, list(state.gaps)) == (total, total, [])
        assert (await outbox.stats()).events == 0
    # The second Welcome listed the ranges: the edge deleted their rows and sent none of them again.
    assert _cloud_rows(tmp_path, "SELECT duplicates, committed_ranges FROM gateway_streams") == [(0, "")]
    assert sorted(seq for (seq,) in _cloud_rows(tmp_path, "SELECT seq FROM events")) == list(range(1, total + 1))


async def test_a_cloud_restart_mid_drain_loses_and_doubles_nothing(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    backlog = 10_000
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await _fill(outbox, backlog)
        async with running(_uplink(outbox, f"127.0.0.1:{port}", batch_events_max=100)) as uplink:
            async with CloudServer(_config(tmp_path, port)):
                await _wait_acked(uplink, 1)
                fresh = await outbox.append(_event(backlog))
                await _wait_deleted(outbox, fresh)
            more = await outbox.append_many([_event(n) for n in range(backlog + 1, backlog + 101)])
            async with CloudServer(_config(tmp_path, port)) as cloud:
                await _wait_acked(uplink, more[-1])
                state = await _gateway(cloud.target)
        total = backlog + 101
        assert (state.committed_through_seq, state.events_stored, list(state.gaps)) == (total, total, [])
        assert (await outbox.stats()).events == 0
    assert sorted(seq for (seq,) in _cloud_rows(tmp_path, "SELECT seq FROM events")) == list(range(1, total + 1))


async def test_acked_ranges_delete_exactly_the_rows_they_cover(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append_many([_event(n) for n in range(30)])
        assert await outbox.delete_committed(5, [(10, 12), (20, 20)]) == 9
        left = [seq for seq, _payload in await outbox.read_after(0, 100)]
        assert left == [*range(6, 10), *range(13, 20), *range(21, 31)]
        assert await outbox.delete_committed(5, [(10, 12)]) == 0  # a late or repeated ack deletes nothing more
        assert [seq for seq, _ in await outbox.read_after(5, 100, before=13)] == [6, 7, 8, 9]


class _OldCloud:
    """Answers as a cloud without committed ranges did: no accepts_ranges, cumulative acks of the last seq."""

    def __init__(self) -> None:
        self.batches: list[ingest_pb2.EventBatch] = []

    async def Stream(
        self, requests: AsyncIterator[ingest_pb2.GatewayMessage], context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[ingest_pb2.CloudMessage]:
        async for message in requests:
            if message.WhichOneof("body") == "hello":
                yield ingest_pb2.CloudMessage(
                    welcome=ingest_pb2.Welcome(resume_after_seq=0, max_batch_events=2000, max_unacked_batches=8)
                )
            elif message.WhichOneof("body") == "batch":
                self.batches.append(message.batch)
                last = message.batch.events[-1].seq
                yield ingest_pb2.CloudMessage(
                    ack=ingest_pb2.Ack(batch_id=message.batch.batch_id, committed_through_seq=last)
                )


async def test_against_a_cloud_without_ranges_the_uplink_sends_in_seq_order_only(tmp_path: Path) -> None:
    old = _OldCloud()
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(old, server)  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
            await _fill(outbox, 3000)
            async with running(_uplink(outbox, f"127.0.0.1:{port}", batch_events_max=100)) as uplink:
                await _wait_acked(uplink, 1)
                fresh = await outbox.append(_event(3000))
                await _wait_acked(uplink, fresh)
            assert uplink.live_batches_sent_total == 0
    finally:
        await server.stop(None)
    assert not any(batch.HasField("follows_seq") for batch in old.batches)
    seqs = [event.seq for batch in old.batches for event in batch.events]
    assert seqs == list(range(1, 3002))


async def test_batches_stay_under_the_byte_cap_the_welcome_gives(tmp_path: Path) -> None:
    """The cloud's message limit is smaller than the edge's own batch cap: the Welcome's cap wins."""
    async with (
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_config(tmp_path, max_message_bytes=256 * 1024)) as cloud,
    ):
        big = []
        for n in range(60):
            event = _event(n)
            event.read_point.antenna = "x" * 10_000  # ~10 kB per event: 600 kB in all, over 256 KiB
            big.append(event)
        await outbox.append_many(big)
        async with running(_uplink(outbox, cloud.target, batch_events_max=500)) as uplink:
            await _wait_acked(uplink, 60)
        assert uplink.sessions_total == 1  # no batch was refused
        assert uplink.batches_sent_total >= 3
        state = await _gateway(cloud.target)
        assert (state.events_stored, state.committed_through_seq) == (60, 60)


def test_a_batch_with_follows_seq_encodes_as_protobuf_does() -> None:
    payloads = [_event(n).SerializeToString() for n in range(3)]
    for follows_seq in (0, 1, 2**40):
        encoded = encode_batch_message(9, payloads, 1_700_000_000_123, follows_seq)
        expected = ingest_pb2.GatewayMessage(
            batch=ingest_pb2.EventBatch(
                batch_id=9, events=[events_pb2.Event.FromString(p) for p in payloads], follows_seq=follows_seq
            )
        )
        expected.batch.gateway_time.FromMilliseconds(1_700_000_000_123)
        assert ingest_pb2.GatewayMessage.FromString(encoded) == expected
        assert encoded == expected.SerializeToString()


async def test_lanes_alternate_and_open_no_range_past_their_bound(tmp_path: Path) -> None:
    """The live lane takes the newest rows first; at `ranges_max` it only extends its range, opening none."""
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append_many([_event(n) for n in range(100)])
        lanes = Lanes(0, [], ranges_max=1, batch_max=10, bytes_max=1 << 20)

        async def take() -> tuple[int, int, int | None, bool]:
            planned = await lanes.next_batch(outbox)
            assert planned is not None
            return planned.rows[0][0], planned.rows[-1][0], planned.follows_seq, planned.live

        assert await take() == (91, 100, 90, True)
        assert await take() == (1, 10, 0, False)
        await outbox.append_many([_event(n) for n in range(100, 200)])  # the tail is 100 ahead again
        assert await take() == (101, 110, 100, True)  # at the bound: the range grows, no new one opens
        assert lanes.ranges == [(91, 110)]
        assert await take() == (11, 20, 10, False)
        lanes.acked(110)  # the cloud's prefix passed the range
        assert lanes.ranges == []


async def test_lanes_jump_a_range_and_the_next_batch_declares_the_hole_below_it(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append_many([_event(n) for n in range(30)])
        await outbox.delete_committed(0, [(6, 10)])  # as if shed: 6..10 are gone at the edge
        lanes = Lanes(0, [(11, 20)], ranges_max=4, batch_max=5, bytes_max=1 << 20)
        first = await lanes.next_batch(outbox)
        second = await lanes.next_batch(outbox)
        assert first is not None and second is not None
        assert ([seq for seq, _ in first.rows], first.follows_seq, first.live) == ([21, 22, 23, 24, 25], 20, True)
        assert ([seq for seq, _ in second.rows], second.follows_seq) == ([1, 2, 3, 4, 5], 0)
        third = await lanes.next_batch(outbox)  # the live lane goes on above its range
        assert third is not None and [seq for seq, _ in third.rows] == [26, 27, 28, 29, 30]
        # Nothing left below 11 (6..10 are gone): the backlog lane jumps the range, and nothing else is due.
        assert await lanes.next_batch(outbox) is None
        assert lanes.backlog_seq == 30
        await outbox.append(_event(30))
        fifth = await lanes.next_batch(outbox)
        assert fifth is not None
        # It follows 5, the backlog lane's last row: 6..10, outside the range, are what the cloud records as gone.
        assert ([seq for seq, _ in fifth.rows], fifth.follows_seq, fifth.live) == ([31], 5, False)
