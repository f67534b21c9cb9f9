"""The uplink: drains the outbox to the cloud over one bidirectional gRPC stream, deleting only what is acked.

Session: Hello → Welcome(resume_after_seq) → batches up, one Ack per batch down, in order.
If the Welcome says the cloud accepts it, a GatewayStatus with the gateway's alarms follows the Hello
and goes again whenever they change (at most once per `STATUS_INTERVAL_MS_MIN`); it is not acked.
The Hello and every batch carry the gateway's wall clock (`gateway_time`), from which the cloud
measures this gateway's clock offset; with a token configured, every stream carries
`authorization: Bearer <token>` metadata, which a cloud with gateway tokens requires.
At most `unacked_batches_max` batches are in flight; an Ack's `committed_through_seq` and
`committed_ranges` let the outbox delete every row they cover, and nothing else. Acks are cumulative
(the cloud commits batches in the order sent, so an Ack settles its batch and every one sent before
it): one that arrives late, out of order or twice is harmless. Any failure (connect, EOF, ack
timeout, protocol breach) ends the session; the next one starts after a jittered exponential
backoff and resumes where the cloud says: after `resume_after_seq`, skipping its `committed_ranges`.
If the Welcome says `accepts_ranges`, fresh events do not wait behind a backlog: `edge.uplink.lanes`
sends them from the outbox tail, taking turns with the backlog, and each batch says `follows_seq`.
Batches stay under the smaller of `batch_bytes_max` and the cloud's `Welcome.batch_bytes_max`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
import grpc.aio
from tallyport.v1 import ingest_pb2

from edge.alarms import AlarmRegistry
from edge.backoff import Backoff
from edge.clock import Clock, SystemClock
from edge.errors import OutboxError, ProtocolError, UplinkError
from edge.outbox import Outbox
from edge.uplink.lanes import Lanes
from edge.uplink.status import STATUS_INTERVAL_MS_MIN, encode_status_message
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
    token: str = ""  # bearer token for the cloud's gateway authentication; "" sends none


# The most committed ranges this edge lets the cloud hold for it (the cloud may allow more).
RANGES_MAX = 4


@dataclass
class _InFlight:
    batch_id: int
    first_seq: int
    last_seq: int
    events: int
    sent_at_s: float = 0.0  # event-loop time when it was handed to the stream; its ack is due ack_timeout_ms later


class Uplink:
    """Owns the stream to the cloud. `run()` returns only when cancelled."""

    def __init__(
        self,
        outbox: Outbox,
        settings: UplinkSettings,
        backoff: Backoff,
        clock: Clock | None = None,
        alarms: AlarmRegistry | None = None,
    ) -> None:
        assert settings.batch_events_max >= 1 and settings.unacked_batches_max >= 1
        self._outbox = outbox
        self._settings = settings
        self._backoff = backoff
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._metadata = (("authorization", f"Bearer {settings.token}"),) if settings.token else None
        self.connected = False
        self.acked_through_seq = 0
        self.batches_sent_total = 0
        self.events_acked_total = 0
        self.sessions_total = 0
        self.rejects_total = 0
        self.live_batches_sent_total = 0  # batches sent from the outbox tail ahead of a backlog
        self._alarms = alarms if alarms is not None else outbox.alarms
        self.statuses_sent_total = 0
        # Batches and statuses share the stream: one write at a time.
        self._write_lock = asyncio.Lock()
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
            )(None, metadata=self._metadata)
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
        hello.gateway_time.FromMilliseconds(self._clock.unix_ms())
        timeout_s = settings.connect_timeout_ms / 1000
        await _write(call, encode_hello_message(hello), timeout_s)
        # asyncio.timeout, never wait_for: Python 3.11's wait_for swallows a cancellation that lands as
        # the awaited thing completes, and a session whose task ignores its cancellation never ends.
        async with asyncio.timeout(timeout_s):
            message = await call.read()
        if not isinstance(message, ingest_pb2.CloudMessage):  # grpc.aio.EOF
            raise UplinkError("cloud closed the stream before answering hello")
        if message.WhichOneof("body") != "welcome":
            raise ProtocolError(f"expected welcome, got {message.WhichOneof('body')}")
        welcome = message.welcome
        ranges = _ranges(welcome.committed_ranges)
        self._outbox.ensure_seq_after(max([welcome.resume_after_seq, *(last for _first, last in ranges)]))
        await self._outbox.delete_committed(welcome.resume_after_seq, ranges)
        self.acked_through_seq = welcome.resume_after_seq
        self.sessions_total += 1
        self.connected = True
        self._last_error = ""
        self._backoff.reset()
        log.info(
            "uplink connected",
            extra={
                "target": settings.target,
                "resume_after_seq": welcome.resume_after_seq,
                "committed_ranges": len(ranges),
                "accepts_ranges": welcome.accepts_ranges,
            },
        )
        return welcome

    async def _stream(
        self, call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage], welcome: ingest_pb2.Welcome
    ) -> None:
        settings = self._settings
        window = min(settings.unacked_batches_max, welcome.max_unacked_batches or settings.unacked_batches_max)
        batch_max = min(settings.batch_events_max, welcome.max_batch_events or settings.batch_events_max)
        lanes = Lanes(
            welcome.resume_after_seq,
            _ranges(welcome.committed_ranges),
            ranges_max=min(RANGES_MAX, welcome.max_committed_ranges) if welcome.accepts_ranges else 0,
            batch_max=batch_max,
            bytes_max=min(settings.batch_bytes_max, welcome.batch_bytes_max or settings.batch_bytes_max),
        )
        in_flight: deque[_InFlight] = deque()
        window_open = asyncio.Event()
        window_open.set()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._send_loop(call, lanes, window, in_flight, window_open))
            group.create_task(self._receive_loop(call, lanes, in_flight, window, window_open))
            if welcome.accepts_status:  # an older cloud would end the stream on a message it does not know
                group.create_task(self._status_loop(call))

    async def _send_loop(
        self,
        call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage],
        lanes: Lanes,
        window: int,
        in_flight: deque[_InFlight],
        window_open: asyncio.Event,
    ) -> None:
        outbox = self._outbox
        while True:
            await window_open.wait()
            planned = await lanes.next_batch(outbox)
            if planned is None:
                # Clear before looking again so a commit between the two reads is not missed.
                outbox.events_committed.clear()
                planned = await lanes.next_batch(outbox)
                if planned is None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._settings.idle_check_ms / 1000):
                            await outbox.events_committed.wait()
                    continue
            rows = planned.rows
            batch_id = self._next_batch_id
            self._next_batch_id += 1
            payloads = [payload for _seq, payload in rows]
            message = encode_batch_message(batch_id, payloads, max(self._clock.unix_ms(), 0), planned.follows_seq)
            in_flight.append(_InFlight(batch_id, rows[0][0], rows[-1][0], len(rows), asyncio.get_running_loop().time()))
            if planned.live:
                self.live_batches_sent_total += 1
            if len(in_flight) >= window:
                window_open.clear()
            async with self._write_lock:
                await _write(call, message, self._settings.ack_timeout_ms / 1000)
            self.batches_sent_total += 1

    async def _status_loop(self, call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage]) -> None:
        """Send the alarms now, then each time they change."""
        while True:
            self._alarms.changed.clear()  # before reading them, so a change while sending is not missed
            message = encode_status_message(self._alarms.snapshot())
            async with self._write_lock:
                await _write(call, message, self._settings.ack_timeout_ms / 1000)
            self.statuses_sent_total += 1
            await asyncio.sleep(STATUS_INTERVAL_MS_MIN / 1000)
            await self._alarms.changed.wait()

    async def _receive_loop(
        self,
        call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage],
        lanes: Lanes,
        in_flight: deque[_InFlight],
        window: int,
        window_open: asyncio.Event,
    ) -> None:
        while True:
            message = await self._read_within_ack_timeout(call, in_flight)
            if not isinstance(message, ingest_pb2.CloudMessage):  # grpc.aio.EOF
                raise UplinkError("cloud closed the stream")
            if message.WhichOneof("body") != "ack":
                raise ProtocolError(f"expected ack, got {message.WhichOneof('body')}")
            await self._on_ack(message.ack, in_flight, lanes)
            if len(in_flight) < window:
                window_open.set()

    async def _read_within_ack_timeout(
        self, call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage], in_flight: deque[_InFlight]
    ) -> object:
        """The next message; UplinkError once the oldest batch in flight has waited `ack_timeout_ms`.

        The deadline is re-read while waiting: a batch sent after the read began (the usual case on a
        quiet link) still gets its timeout, so a link that swallows batches without breaking shows.
        The read is never cancelled on the way (cancelling a grpc.aio read cancels the whole call).
        """
        loop = asyncio.get_running_loop()
        ack_timeout_s = self._settings.ack_timeout_ms / 1000
        read = asyncio.ensure_future(call.read())
        try:
            while True:
                wait_s = self._settings.idle_check_ms / 1000
                if in_flight:
                    overdue_s = loop.time() - in_flight[0].sent_at_s - ack_timeout_s
                    if overdue_s >= 0:
                        raise UplinkError(f"no ack within {self._settings.ack_timeout_ms} ms")
                    wait_s = min(wait_s, -overdue_s)
                done, _ = await asyncio.wait({read}, timeout=wait_s)
                if done:
                    return read.result()
        finally:
            if not read.done():
                read.cancel()  # the session is ending anyway

    async def _on_ack(self, ack: ingest_pb2.Ack, in_flight: deque[_InFlight], lanes: Lanes) -> None:
        """Settle what an ack covers. The cloud commits batches in the order sent, so an ack that covers its
        batch settles it and every batch sent before it, in whatever order acks arrive; its prefix and ranges
        are committed state, so deleting what they cover is right even for a late ack. An ack for a batch
        already settled (late, reordered or repeated by the network) changes nothing."""
        if not 0 < ack.batch_id < self._next_batch_id:
            raise ProtocolError(f"ack for batch {ack.batch_id}, which was never sent")
        ranges = _ranges(ack.committed_ranges)
        acked = next((batch for batch in in_flight if batch.batch_id == ack.batch_id), None)
        if acked is not None and not _covers(ack.committed_through_seq, ranges, acked.first_seq, acked.last_seq):
            # The cloud says it has not committed all of this batch: keep the rest and resend it.
            raise ProtocolError(
                f"ack for batch {acked.batch_id} (seqs {acked.first_seq}..{acked.last_seq}) commits through "
                f"{ack.committed_through_seq} and ranges {ranges}, which do not cover the batch"
            )
        for reject in ack.rejects:
            self.rejects_total += 1
            log.warning(
                "cloud quarantined an event",
                extra={"seq": reject.seq, "event_id": reject.event_id, "reason": reject.reason},
            )
        if acked is None:
            log.debug("stale ack ignored", extra={"batch_id": ack.batch_id, "seq": ack.committed_through_seq})
            return
        while in_flight and in_flight[0].batch_id <= ack.batch_id:
            self.events_acked_total += in_flight.popleft().events
        if ack.committed_through_seq > self.acked_through_seq or ranges:
            await self._outbox.delete_committed(ack.committed_through_seq, ranges)
        self.acked_through_seq = max(self.acked_through_seq, ack.committed_through_seq)
        lanes.acked(self.acked_through_seq)


def _ranges(ranges: Iterable[ingest_pb2.SeqRange]) -> list[tuple[int, int]]:
    return [(pair.first_seq, pair.last_seq) for pair in ranges]


def _covers(prefix: int, ranges: list[tuple[int, int]], first_seq: int, last_seq: int) -> bool:
    """Whether the committed prefix or one committed range holds every seq of first_seq..last_seq."""
    return last_seq <= prefix or any(first <= first_seq and last_seq <= last for first, last in ranges)


async def _write(
    call: grpc.aio.StreamStreamCall[bytes, ingest_pb2.CloudMessage], message: bytes, timeout_s: float
) -> None:
    """Write one message; a stream that already ended reports its gRPC status as an UplinkError."""
    try:
        async with asyncio.timeout(timeout_s):
            await call.write(message)
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
