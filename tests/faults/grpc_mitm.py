"""A gRPC man in the middle on the uplink, for the faults a TCP proxy cannot express.

    edge ──▶ IngestService.Stream (this server) ──▶ IngestService.Stream (the real cloud)

Each stream the edge opens is relayed as one stream to the cloud, message by message, bytes unchanged
(with the edge's authorization metadata). The MITM parses a message only to see what it is, and can:
- `duplicate_batches`: send a batch to the cloud twice in a row, as a network that replays a message
  would; both of the cloud's acks go back to the edge (the second is an ack the edge already has);
- `reorder_acks`: hold an ack back and deliver it after the next one (or after `HOLD_S_MAX`, so a held
  last ack is late, not lost).
Which batches and acks are picked is drawn from a seeded random generator. A stream the cloud ends
ends the edge's stream with the same status.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import grpc.aio
from tallyport.v1 import ingest_pb2

SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
METHOD = f"/{SERVICE}/Stream"
HOLD_S_MAX = 0.5
QUEUE_MESSAGES_MAX = 256


@dataclass
class MitmCounters:
    streams_total: int = 0
    batches_relayed: int = 0
    batches_duplicated: int = 0
    acks_relayed: int = 0
    acks_reordered: int = 0  # held back and delivered after a later ack
    acks_late: int = 0  # held back and delivered alone after HOLD_S_MAX


class IngestMitm:
    """`async with IngestMitm(cloud_port, seed) as mitm:` serves on `mitm.port` until the block ends."""

    def __init__(self, cloud_port: int, seed: int, *, duplicate_batches: float = 0.0, reorder_acks: float = 0.0):
        self.cloud_target = f"127.0.0.1:{cloud_port}"
        self.duplicate_batches = duplicate_batches  # probability per batch
        self.reorder_acks = reorder_acks  # probability per ack
        self.counters = MitmCounters()
        self.port = 0
        self._rng = random.Random(seed)
        self._server: grpc.aio.Server | None = None

    async def __aenter__(self) -> IngestMitm:
        self._server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(self._stream)  # no (de)serializers: bytes pass as they are
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler})])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        await self._server.stop(grace=None)

    async def _stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        self.counters.streams_total += 1
        metadata = tuple((key, value) for key, value in context.invocation_metadata() or () if key.startswith("auth"))
        async with grpc.aio.insecure_channel(self.cloud_target) as channel:
            call = channel.stream_stream(METHOD)(metadata=metadata or None)
            replies: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_MESSAGES_MAX)
            relay_up = asyncio.create_task(self._relay_to_cloud(requests, call))
            relay_down = asyncio.create_task(_read_all(call, replies))
            try:
                async for reply in self._replies_to_edge(replies):
                    yield reply
                # The cloud ended the stream: end the edge's the same way.
                code = await call.code()
                if code != grpc.StatusCode.OK:
                    await context.abort(code, await call.details() or "")
            finally:
                for task in (relay_up, relay_down):
                    task.cancel()
                await asyncio.gather(relay_up, relay_down, return_exceptions=True)
                call.cancel()

    async def _relay_to_cloud(
        self, requests: AsyncIterator[bytes], call: grpc.aio.StreamStreamCall[bytes, bytes]
    ) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            async for raw in requests:
                message = ingest_pb2.GatewayMessage.FromString(raw)
                await call.write(raw)
                if message.WhichOneof("body") != "batch":
                    continue
                self.counters.batches_relayed += 1
                if self._rng.random() < self.duplicate_batches:
                    await call.write(raw)
                    self.counters.batches_duplicated += 1
            await call.done_writing()

    async def _replies_to_edge(self, replies: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
        held: bytes | None = None
        while True:
            try:
                raw = await asyncio.wait_for(replies.get(), HOLD_S_MAX if held is not None else None)
            except TimeoutError:
                assert held is not None
                yield held
                held = None
                self.counters.acks_late += 1
                continue
            if raw is None:
                if held is not None:
                    yield held
                return
            if ingest_pb2.CloudMessage.FromString(raw).WhichOneof("body") != "ack":
                yield raw
                continue
            self.counters.acks_relayed += 1
            if held is not None:
                yield raw
                yield held  # the older ack after the newer one
                held = None
                self.counters.acks_reordered += 1
            elif self._rng.random() < self.reorder_acks:
                held = raw
            else:
                yield raw


async def _read_all(call: grpc.aio.StreamStreamCall[bytes, bytes], replies: asyncio.Queue[bytes | None]) -> None:
    """Every message the cloud sends, then None when its stream ends (however it ends)."""
    try:
        async for raw in call:
            await replies.put(raw)
    except grpc.aio.AioRpcError:
        pass
    finally:
        await replies.put(None)
