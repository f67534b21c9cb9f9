"""Edge outbox → cloud committed, end to end, against a bare gRPC stream moving the same bytes.

Ours: an outbox pre-filled with N events, drained by the real uplink into the real cloud aggregator
(SQLite store, validation, dedupe, projections), until every event is acknowledged as committed.
Baseline, same run: a bare `grpc.aio` bidirectional stream carrying the same serialized batches to a
server that answers each with a small ack and does nothing else.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

import grpc
import grpc.aio
from tallyport.v1 import events_pb2

from cloud.config import CloudConfig
from cloud.server import CloudServer
from edge.backoff import Backoff
from edge.clock import SystemClock
from edge.outbox import open_outbox
from edge.uplink import Uplink, UplinkSettings
from edge.uplink.wire import encode_batch_message

BATCH_EVENTS = 500
WINDOW = 4


def _event(n: int) -> events_pb2.Event:
    event = events_pb2.Event(
        gateway_id="gw-bench",
        type=events_pb2.EVENT_TYPE_OBJECT,
        action=events_pb2.ACTION_OBSERVE,
        biz_step=events_pb2.BIZ_STEP_RECEIVING,
        biz_location="urn:tallyport:loc:bench:dock-1",
        read_point=events_pb2.ReadPoint(id="urn:tallyport:rp:bench:dock-1", device_id="scanner-1"),
        event_class=events_pb2.EVENT_CLASS_MOVEMENT,
    )
    event.event_time.GetCurrentTime()
    event.objects.append(
        events_pb2.IdentifiedObject(
            id=f"https://id.gs1.org/01/09501101530003/21/S{n}", gtin="09501101530003", serial=f"S{n}"
        )
    )
    return event


async def _ours(root: Path, count: int) -> float:
    config = CloudConfig.model_validate({"server": {"listen": "127.0.0.1:0"}, "store": {"path": str(root / "c.db")}})
    async with open_outbox(root / "o.db", clock=SystemClock(), rng=random.Random(1)) as outbox:
        for start in range(0, count, 5000):
            await outbox.append_many([_event(n) for n in range(start, min(count, start + 5000))])
        async with CloudServer(config) as server:
            settings = UplinkSettings(
                target=server.target,
                gateway_id="gw-bench",
                agent_version="bench",
                batch_events_max=BATCH_EVENTS,
                unacked_batches_max=WINDOW,
            )
            uplink = Uplink(outbox, settings, Backoff(delay_ms_initial=50, delay_ms_max=500, rng=random.Random(1)))
            started = time.perf_counter()
            task = asyncio.create_task(uplink.run())
            while uplink.acked_through_seq < count:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return count / elapsed


async def _baseline(count: int) -> float:
    payloads = [_event(n).SerializeToString() for n in range(BATCH_EVENTS)]
    message = encode_batch_message(1, payloads)

    async def stream(requests: object, context: object) -> object:
        async for _request in requests:  # type: ignore[attr-defined]
            yield b"\x12\x02\x08\x01"  # a CloudMessage{ack{batch_id: 1}}, as small as ours

    handler = grpc.method_handlers_generic_handler(
        "bench.Bare", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    batches = count // BATCH_EVENTS
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.stream_stream(
                "/bench.Bare/Stream", request_serializer=lambda b: b, response_deserializer=lambda b: b
            )(None)
            started = time.perf_counter()
            in_flight = 0
            received = 0
            for _ in range(batches):
                await call.write(message)
                in_flight += 1
                if in_flight >= WINDOW:
                    await call.read()
                    in_flight -= 1
                    received += 1
            while received < batches:
                await call.read()
                received += 1
            elapsed = time.perf_counter() - started
            await call.done_writing()
    finally:
        await server.stop(None)
    return batches * BATCH_EVENTS / elapsed


async def run(quick: bool = False) -> None:
    count = 20_000 if quick else 200_000
    baseline = await _baseline(count)
    with tempfile.TemporaryDirectory() as tmp:
        ours = await _ours(Path(tmp), count)
    print(f"edge outbox → cloud committed, {count} events, {BATCH_EVENTS}-event batches, window {WINDOW}")
    print(f"  baseline bare grpc.aio stream, same bytes  {baseline:>10,.0f} events/s")
    print(f"  uplink → ingest → SQLite (dedupe, views)   {ours:>10,.0f} events/s  ({ours / baseline:.1%} of bare)")
