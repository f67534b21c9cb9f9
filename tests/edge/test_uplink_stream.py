"""The uplink against the real cloud aggregator over a real socket: drain, ack-delete, resume, survive restarts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
from tallyport.v1 import events_pb2, ingest_pb2, inventory_pb2, inventory_pb2_grpc

from cloud.config import CloudConfig
from cloud.server import CloudServer
from edge.backoff import Backoff
from edge.clock import SystemClock
from edge.outbox import Outbox, open_outbox
from edge.uplink import Uplink, UplinkSettings

GATEWAY = "gw-uplink"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(tmp_path: Path, port: int) -> CloudConfig:
    return CloudConfig.model_validate(
        {"server": {"listen": f"127.0.0.1:{port}", "shutdown_grace_ms": 200}, "store": {"path": str(tmp_path / "c.db")}}
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


async def _wait_acked(uplink: Uplink, seq: int, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while uplink.acked_through_seq < seq:
            await asyncio.sleep(0.01)


async def _stored(target: str) -> tuple[int, int]:
    """(events stored for the gateway, committed_through_seq) as the cloud reports them."""
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await inventory_pb2_grpc.InventoryServiceStub(channel).ListGateways(
            inventory_pb2.ListGatewaysRequest(), timeout=5
        )
    (state,) = [g for g in reply.gateways if g.gateway_id == GATEWAY]
    return state.events_stored, state.committed_through_seq


async def test_backlog_drains_in_windowed_batches_and_leaves_the_outbox_only_when_acked(tmp_path: Path) -> None:
    async with (
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_config(tmp_path, 0)) as cloud,
    ):
        await outbox.append_many([_event(n) for n in range(1200)])
        async with running(_uplink(outbox, cloud.target, batch_events_max=100, unacked_batches_max=3)) as uplink:
            await _wait_acked(uplink, 1200)
        assert uplink.batches_sent_total == 12
        assert (await outbox.stats()).events == 0
        assert await _stored(cloud.target) == (1200, 1200)


async def test_live_events_follow_the_backlog_within_a_second(tmp_path: Path) -> None:
    async with (
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_config(tmp_path, 0)) as cloud,
    ):
        async with running(_uplink(outbox, cloud.target)) as uplink:
            await _wait_acked(uplink, 0)
            for n in range(5):
                seq = await outbox.append(_event(n))
                await _wait_acked(uplink, seq, timeout_s=1.0)
        assert await _stored(cloud.target) == (5, 5)


async def test_a_new_session_resumes_where_the_cloud_says_without_duplicates(tmp_path: Path) -> None:
    async with (
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_config(tmp_path, 0)) as cloud,
    ):
        await outbox.append_many([_event(n) for n in range(300)])
        async with running(_uplink(outbox, cloud.target, batch_events_max=50)) as first:
            await _wait_acked(first, 300)
        await outbox.append_many([_event(n) for n in range(300, 450)])
        async with running(_uplink(outbox, cloud.target, batch_events_max=50)) as second:
            await _wait_acked(second, 450)
        assert second.sessions_total == 1
        assert await _stored(cloud.target) == (450, 450)


async def test_cloud_restarts_mid_drain_and_the_uplink_resumes_with_nothing_lost_or_doubled(tmp_path: Path) -> None:
    port = _free_port()
    async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        await outbox.append_many([_event(n) for n in range(3000)])
        async with running(_uplink(outbox, f"127.0.0.1:{port}", batch_events_max=100)) as uplink:
            async with CloudServer(_config(tmp_path, port)):
                await _wait_acked(uplink, 500)
            # The cloud is gone; the gateway keeps its backlog.
            assert (await outbox.stats()).events > 0
            await outbox.append_many([_event(n) for n in range(3000, 3100)])
            async with CloudServer(_config(tmp_path, port)) as cloud:
                await _wait_acked(uplink, 3100)
                assert await _stored(cloud.target) == (3100, 3100)
        assert uplink.sessions_total >= 2
        assert (await outbox.stats()).events == 0


class _MisbehavingIngest:
    """A cloud that acks the wrong batch: a contract breach we cannot provoke from the real server."""

    def __init__(self) -> None:
        self.hellos = 0

    async def Stream(
        self, requests: AsyncIterator[ingest_pb2.GatewayMessage], context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[ingest_pb2.CloudMessage]:
        async for message in requests:
            if message.WhichOneof("body") == "hello":
                self.hellos += 1
                yield ingest_pb2.CloudMessage(welcome=ingest_pb2.Welcome(resume_after_seq=0))
            else:
                last = message.batch.events[-1].seq
                yield ingest_pb2.CloudMessage(
                    ack=ingest_pb2.Ack(batch_id=message.batch.batch_id + 7, committed_through_seq=last)
                )


async def test_an_ack_for_the_wrong_batch_ends_the_session_and_deletes_nothing(tmp_path: Path) -> None:
    from tallyport.v1 import ingest_pb2_grpc

    fake = _MisbehavingIngest()
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(fake, server)  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
            await outbox.append_many([_event(n) for n in range(10)])
            async with running(_uplink(outbox, f"127.0.0.1:{port}")) as uplink:
                async with asyncio.timeout(10):
                    while fake.hellos < 3:
                        await asyncio.sleep(0.01)
                assert not uplink.connected or uplink.acked_through_seq == 0
            assert (await outbox.stats()).events == 10
    finally:
        await server.stop(None)


async def test_batches_stay_under_the_byte_cap_the_cloud_accepts(tmp_path: Path) -> None:
    async with (
        open_outbox(tmp_path / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox,
        CloudServer(_config(tmp_path, 0)) as cloud,
    ):
        big = []
        for n in range(60):
            event = _event(n)
            event.read_point.antenna = "x" * 10_000  # ~10 kB per event
            big.append(event)
        await outbox.append_many(big)
        settings = {"batch_events_max": 500, "batch_bytes_max": 64 * 1024}
        async with running(_uplink(outbox, cloud.target, **settings)) as uplink:
            await _wait_acked(uplink, 60)
        assert uplink.batches_sent_total >= 10  # at most 6 such events fit in 64 KiB
        assert await _stored(cloud.target) == (60, 60)
