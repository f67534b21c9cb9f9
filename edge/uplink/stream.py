"""The uplink: drains the outbox to the cloud over one bidirectional gRPC stream, deleting only what is acked.

Session: Hello → Welcome(resume_after_seq) → batches up, one Ack per batch down, in order.
At most `unacked_batches_max` batches are in flight; an Ack's `committed_through_seq` lets the outbox
delete every row up to it. Any failure (connect, EOF, ack timeout, protocol breach) ends the session;
the next one starts after a jittered exponential backoff and resumes where the cloud says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import grpc
import grpc.aio
from tallyport.v1 import ingest_pb2

from edge.backoff import Backoff
from edge.errors import OutboxError, ProtocolError, UplinkError
from edge.outbox import Outbox
from edge.uplink.wire import encode_batch_message, encode_hello_message

log = logging.getLogger(__name__)

_STREAM_METHOD = "/{}/{}".format(
    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].methods_by_name["Stream"].name,
)
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    # A silently dead link (no RST) shows within ~30 s even while acks are awaited with no timeout running;
    # the cloud allows pings every 10 s (cloud/server.py).
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect quickly after a cloud restart; our own Backoff paces the sessions.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


@dataclass(frozen=True)
class UplinkSettings:
    target: str  # host:port of the cloud's ingest service
    gateway_id: str
    agent_version: str
    batch_events_max: int = 500
    # Below the cloud's 4 MiB default message limit: a batch over it would be refused again on every retry.
    batch_bytes_max: int = 3 * 1024 * 1024
    unacked_batches_max: int = 4
    ack_timeout_ms: int = 10_000
    connect_timeout_ms: int = 5_000
    idle_check_ms: int = 1_000  # how long to wait for new events before looking again


@dataclass
class _InFlight:
    batch_id: int
    last_seq: int
    events: int


class Uplink:
    """Owns the stream to the cloud. `run()` returns only when cancelled."""

    def __init__(self, outbox: Outbox, settings: UplinkSettings, backoff: Backoff) -> None:
        assert settings.batch_events_max >= 1 and settings.unacked_batches_max >= 1
        self._outbox = outbox
        self._settings = settings
        self._backoff = backoff
        self.connected = False
        self.acked_through_seq = 0
        self.batches_sent_total = 0
        self.events_acked_total = 0
        self.sessions_total = 0
        self.rejects_total = 0
        self._next_batch_id = 1
        self._last_error = ""

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except* (UplinkError, OutboxError, grpc.aio.AioRpcError, TimeoutError) as failures:
                self._set_disconnected(_describe(failures.exceptions[0]))
            delay_s = self._backoff.next_delay_s()
            log.debug("uplink reconnecting", extra={"delay_ms": round(delay_s * 1000)})
            await asyncio.sleep(delay_s)

    def _set_disconnected(self, reason: str) -> None:
        # Availability changes are logged once, not on every failed attempt.
        if self.connected or reason != self._last_error:
            log.warning("uplink down", extra={"target": self._settings.target, "reason": reason})
        self.connected = False
        self._last_error = reason

    async def _session(self) -> None:
        settings = self._settings
        async with grpc.aio.insecure_channel(settings.target, options=CHANNEL_OPTIONS) as channel:
            call = channel.stream_stream(
                _STREAM_METHOD,
                request_serializer=_identity,
                response_deserializer=ingest_pb2.CloudMessage.FromString,
            )(None)
            try:
                welcome = await self._handshake(call)
                await self._stream(call, welcome)
            finally:
                call.cancel()

    async def _handshake(self, call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage]) -> ingest_pb2.Welcome:
        settings = self._settings
        stats = await self._outbox.stats()
        hello = ingest_pb2.Hello(
            gateway_id=settings.gateway_id,
            outbox_id=self._outbox.outbox_id,
            oldest_seq=stats.oldest_seq,
            agent_version=settings.agent_version,
        )
        timeout_s = settings.connect_timeout_ms / 1000
        await _write(call, encode_hello_message(hello), timeout_s)
        message = await asyncio.wait_for(call.read(), timeout_s)
        if not isinstance(message, ingest_pb2.CloudMessage):  # grpc.aio.EOF
            raise UplinkError("cloud closed the stream before answering hello")
        if message.WhichOneof("body") != "welcome":
            raise ProtocolError(f"expected welcome, got {message.WhichOneof('body')}")
        welcome = message.welcome
        self._outbox.ensure_seq_after(welcome.resume_after_seq)
        await self._outbox.delete_through(welcome.resume_after_seq)
        self.acked_through_seq = welcome.resume_after_seq
        self.sessions_total += 1
        self.connected = True
        self._last_error = ""
        self._backoff.reset()
        log.info(
            "uplink connected",
            extra={"target": settings.target, "resume_after_seq": welcome.resume_after_seq},
        )
        return welcome

    async def _stream(
        self, call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage], welcome: ingest_pb2.Welcome
    ) -> None:
        settings = self._settings
        window = min(settings.unacked_batches_max, welcome.max_unacked_batches or settings.unacked_batches_max)
        batch_max = min(settings.batch_events_max, welcome.max_batch_events or settings.batch_events_max)
        in_flight: deque[_InFlight] = deque()
        window_open = asyncio.Event()
        window_open.set()
        async with asyncio.TaskGroup() as group:
            group.create_task(
                self._send_loop(call, welcome.resume_after_seq, batch_max, window, in_flight, window_open)
            )
            group.create_task(self._receive_loop(call, in_flight, window, window_open))

    async def _send_loop(
        self,
        call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage],
        last_sent_seq: int,
        batch_max: int,
        window: int,
        in_flight: deque[_InFlight],
        window_open: asyncio.Event,
    ) -> None:
        outbox = self._outbox
        while True:
            await window_open.wait()
            rows = await outbox.read_after(last_sent_seq, batch_max)
            if not rows:
                # Clear before looking again so a commit between the two reads is not missed.
                outbox.events_committed.clear()
                rows = await outbox.read_after(last_sent_seq, batch_max)
                if not rows:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(outbox.events_committed.wait(), self._settings.idle_check_ms / 1000)
                    continue
            rows = _within_bytes(_contiguous_prefix(rows), self._settings.batch_bytes_max)
            batch_id = self._next_batch_id
            self._next_batch_id += 1
            message = encode_batch_message(batch_id, [payload for _seq, payload in rows])
            last_sent_seq = rows[-1][0]
            in_flight.append(_InFlight(batch_id, last_sent_seq, len(rows)))
            if len(in_flight) >= window:
                window_open.clear()
            await _write(call, message, self._settings.ack_timeout_ms / 1000)
            self.batches_sent_total += 1

    async def _receive_loop(
        self,
        call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage],
        in_flight: deque[_InFlight],
        window: int,
        window_open: asyncio.Event,
    ) -> None:
        while True:
            # With nothing in flight there is nothing to time out; a dead link shows on the next send.
            timeout_s = self._settings.ack_timeout_ms / 1000 if in_flight else None
            try:
                message = await asyncio.wait_for(call.read(), timeout_s)
            except TimeoutError as exc:
                raise UplinkError(f"no ack within {self._settings.ack_timeout_ms} ms") from exc
            if not isinstance(message, ingest_pb2.CloudMessage):  # grpc.aio.EOF
                raise UplinkError("cloud closed the stream")
            if message.WhichOneof("body") != "ack":
                raise ProtocolError(f"expected ack, got {message.WhichOneof('body')}")
            await self._on_ack(message.ack, in_flight)
            if len(in_flight) < window:
                window_open.set()

    async def _on_ack(self, ack: ingest_pb2.Ack, in_flight: deque[_InFlight]) -> None:
        if not in_flight or ack.batch_id != in_flight[0].batch_id:
            expected = in_flight[0].batch_id if in_flight else None
            raise ProtocolError(f"ack for batch {ack.batch_id}, expected {expected}")
        batch = in_flight.popleft()
        if ack.committed_through_seq < batch.last_seq:
            # The cloud says it has not committed all of this batch: keep the rest and resend it.
            raise ProtocolError(
                f"ack for batch {batch.batch_id} commits through {ack.committed_through_seq}, "
                f"batch ends at {batch.last_seq}"
            )
        for reject in ack.rejects:
            self.rejects_total += 1
            log.warning(
                "cloud quarantined an event",
                extra={"seq": reject.seq, "event_id": reject.event_id, "reason": reject.reason},
            )
        await self._outbox.delete_through(ack.committed_through_seq)
        self.events_acked_total += batch.events
        self.acked_through_seq = ack.committed_through_seq


def _contiguous_prefix(rows: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Rows up to the first seq gap: a batch is seq-contiguous; a gap (shed sensor samples) ends it, and
    the next batch starting past it tells the cloud those seqs are gone."""
    for index in range(1, len(rows)):
        if rows[index][0] != rows[index - 1][0] + 1:
            return rows[:index]
    return rows


def _within_bytes(rows: list[tuple[int, bytes]], bytes_max: int) -> list[tuple[int, bytes]]:
    """The longest prefix of rows whose payloads fit in `bytes_max`; at least one row, whatever its size."""
    total = 0
    for index, (_seq, payload) in enumerate(rows):
        total += len(payload) + 8  # tag and length prefix of each embedded event
        if total > bytes_max and index > 0:
            return rows[:index]
    return rows


async def _write(
    call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage], message: bytes, timeout_s: float
) -> None:
    """Write one message; a stream that already ended reports its gRPC status as an UplinkError."""
    try:
        await asyncio.wait_for(call.write(message), timeout_s)
    except (asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
        # grpc.aio refuses writes on a finished call without saying why; the status does.
        code = await call.code()
        details = await call.details()
        raise UplinkError(f"stream ended: {code.name if code else 'unknown'}: {details}") from exc


def _identity(message: bytes) -> bytes:
    return message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
