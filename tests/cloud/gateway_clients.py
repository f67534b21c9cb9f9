"""Uplink clients for tests that attack the ingest port: raw-byte streams, and a legit gateway to watch.

Imported as `tests.cloud.gateway_clients` (from tests/cloud and tests/faults alike):
- `raw_stream(channel)`: an IngestService.Stream call that sends whatever bytes it is given and
  returns raw bytes, so a test can send what no generated stub would;
- `LegitGateway`: a well-behaved gateway that streams its events around a hostile client's actions
  (half before, half after), checking every Ack, so a test can show that it lost and doubled nothing;
- listing helpers over the InventoryService: every event, quarantine entry and gateway state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
from grpc import aio
from tallyport.v1 import ingest_pb2, inventory_pb2, inventory_pb2_grpc

from tests.cloud.cloud_testkit import make_event

STREAM_METHOD = "/tallyport.v1.IngestService/Stream"
Metadata = Sequence[tuple[str, str]]


def raw_stream(channel: aio.Channel, metadata: Metadata | None = None) -> Any:
    """An uplink call that writes bytes as given and reads replies as bytes."""
    return channel.stream_stream(
        STREAM_METHOD, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw
    )(metadata=metadata)


def hello_bytes(gateway_id: str, outbox_id: str = "outbox-h", **fields: Any) -> bytes:
    hello = ingest_pb2.Hello(gateway_id=gateway_id, outbox_id=outbox_id, agent_version="test/1", **fields)
    return ingest_pb2.GatewayMessage(hello=hello).SerializeToString()


def batch_bytes(batch_id: int, events: Sequence[Any]) -> bytes:
    return ingest_pb2.GatewayMessage(batch=ingest_pb2.EventBatch(batch_id=batch_id, events=events)).SerializeToString()


async def read_message(call: Any) -> ingest_pb2.CloudMessage:
    """The next reply of a raw stream, parsed; fails the test at the end of the stream."""
    raw = await call.read()
    assert raw is not aio.EOF, "the cloud ended the stream"
    return ingest_pb2.CloudMessage.FromString(raw)


async def expect_status(call: Any, code: grpc.StatusCode) -> str:
    """Read until the stream ends; assert it ended with `code`; return the status details."""
    while True:
        try:
            if await call.read() is aio.EOF:
                break
        except aio.AioRpcError:
            break
    assert await call.code() == code, (await call.code(), await call.details())
    return str(await call.details())


async def all_events(channel: aio.Channel, gateway_id: str) -> list[Any]:
    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    events: list[Any] = []
    token = ""
    while True:
        reply = await stub.ListEvents(
            inventory_pb2.ListEventsRequest(page_size=1000, page_token=token, gateway_id=gateway_id), timeout=10
        )
        events.extend(reply.events)
        token = reply.next_page_token
        if not token:
            return events


async def quarantine_entries(channel: aio.Channel) -> list[Any]:
    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    entries: list[Any] = []
    token = ""
    while True:
        reply = await stub.ListQuarantine(
            inventory_pb2.ListQuarantineRequest(page_size=1000, page_token=token), timeout=10
        )
        entries.extend(reply.entries)
        token = reply.next_page_token
        if not token:
            return entries


async def gateway_states(channel: aio.Channel) -> dict[tuple[str, str], Any]:
    """ListGateways as {(gateway_id, outbox_id): GatewayState}."""
    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    reply = await stub.ListGateways(inventory_pb2.ListGatewaysRequest(), timeout=10)
    return {(state.gateway_id, state.outbox_id): state for state in reply.gateways}


class LegitGateway:
    """A gateway that streams `count` events, half before the `async with` body and half after it.

    Every Ack must commit exactly the batch just sent, as new events, with no reject. `verify()`
    then checks the cloud holds each of its events once and its high-water mark is `count`.
    """

    def __init__(
        self,
        target: str,
        gateway_id: str = "gw-legit",
        *,
        count: int = 400,
        batch_events: int = 20,
        metadata: Metadata | None = None,
    ) -> None:
        assert count % (2 * batch_events) == 0
        self.target = target
        self.gateway_id = gateway_id
        self.outbox_id = "outbox-legit"
        self.count = count
        self.batch_events = batch_events
        self.metadata = metadata
        self.halfway = asyncio.Event()
        self._go_on = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LegitGateway:
        self._task = asyncio.create_task(self._stream())
        halfway = asyncio.create_task(self.halfway.wait())
        # Surface a failure of the first half instead of waiting for a halfway that never comes.
        await asyncio.wait({self._task, halfway}, return_when=asyncio.FIRST_COMPLETED)
        halfway.cancel()
        if self._task.done():
            self._task.result()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task is not None
        if exc is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            return
        self._go_on.set()
        async with asyncio.timeout(60):
            await self._task

    async def _stream(self) -> None:
        async with aio.insecure_channel(self.target) as channel:
            call = raw_stream(channel, self.metadata)
            await call.write(hello_bytes(self.gateway_id, self.outbox_id))
            welcome = await read_message(call)
            assert welcome.WhichOneof("body") == "welcome", welcome
            assert welcome.welcome.resume_after_seq == 0
            batches = range(1, self.count + 1, self.batch_events)
            for batch_id, first_seq in enumerate(batches, start=1):
                if first_seq == self.count // 2 + 1:
                    self.halfway.set()
                    await self._go_on.wait()
                await self._send(call, batch_id, first_seq)
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK, await call.details()

    async def _send(self, call: Any, batch_id: int, first_seq: int) -> None:
        events = [
            make_event(seq, gateway_id=self.gateway_id) for seq in range(first_seq, first_seq + self.batch_events)
        ]
        await call.write(batch_bytes(batch_id, events))
        reply = await read_message(call)
        assert reply.WhichOneof("body") == "ack", reply
        ack = reply.ack
        last_seq = first_seq + self.batch_events - 1
        assert (ack.batch_id, ack.committed_through_seq, ack.accepted, ack.duplicates) == (
            batch_id,
            last_seq,
            self.batch_events,
            0,
        ), ack
        assert not ack.rejects, ack.rejects

    async def verify(self, channel: aio.Channel) -> None:
        """The cloud holds each of this gateway's events exactly once, and its state says so."""
        events = await all_events(channel, self.gateway_id)
        sent = {make_event(seq, gateway_id=self.gateway_id).event_id for seq in range(1, self.count + 1)}
        stored = [event.event_id for event in events]
        assert len(stored) == len(set(stored)) == self.count, "an event is missing or doubled"
        assert set(stored) == sent
        state = (await gateway_states(channel))[(self.gateway_id, self.outbox_id)]
        assert (state.committed_through_seq, state.events_stored) == (self.count, self.count)
