"""`IngestService.Stream`: the cloud's side of the uplink, one bidirectional stream per gateway.

    edge  ── Hello{gateway_id, outbox_id, oldest_seq} ──▶  cloud   (first message, within 30 s)
    edge  ◀── Welcome{resume_after_seq, committed_ranges, limits} ── cloud
    edge  ── EventBatch{batch_id, events, follows_seq} ──▶  cloud   (each seq-contiguous, ascending)
    edge  ◀── Ack{batch_id, committed_through_seq, committed_ranges, ...} ── cloud (after the commit, in order)
    edge  ── GatewayStatus{alarms} ─────────────────────▶  cloud   (optional, any time; stored, not acked)

The Welcome says `accepts_ranges`: batches with `follows_seq` may start above the committed prefix
(fresh events sent while a backlog drains), and the cloud keeps at most `COMMITTED_RANGES_MAX`
committed ranges above the prefix per outbox (`cloud.ingest.commit`, `cloud.ingest.seq_ranges`);
a batch that would make more breaks the protocol. It also says `batch_bytes_max`, the largest
batch the server's message limit leaves room for.

The Hello's (and each batch's) `gateway_time` gives the gateway's clock offset (cloud time
minus gateway time, the smallest of the stream's last samples, since transit delay only adds
to it), recorded with the stream state and listed by ListGateways.

Batches are handled one at a time, straight from the request iterator (gRPC flow control and
the edge's window of `max_unacked_batches` bound what is in flight). An Ack is sent only
after its transaction committed. Status codes the edge sees:
- INVALID_ARGUMENT: the stream broke the protocol (no Hello first, bytes that are not a
  GatewayMessage, bad ids, empty, oversized or non-contiguous batch); reconnecting with the
  same data will fail again.
- RESOURCE_EXHAUSTED: a message over `[ingest].max_message_bytes` (gRPC refuses it), or
  `[ingest].max_streams` streams are already open; retry later.
- UNAUTHENTICATED / PERMISSION_DENIED: gateway tokens are configured and the stream has no
  valid token, or its token belongs to another gateway than its Hello names
  (`cloud.ingest.auth`); such a stream never supersedes the real gateway's.
- ABORTED "superseded by a newer stream": the gateway opened another stream.
- UNAVAILABLE: the store failed (disk full...) or the cloud is shutting down; retry later,
  nothing unacked was committed as far as the edge needs to know.
- DEADLINE_EXCEEDED: no Hello within `HELLO_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from tallyport.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc

from cloud.config import IngestSection
from cloud.errors import ProtocolError, StoreError
from cloud.gateway_alarms import check_status, save_gateway_status
from cloud.ingest.auth import AuthFailure, GatewayAuthenticator, check_claim
from cloud.ingest.commit import (
    SEQ_MAX,
    BatchOutcome,
    HelloOutcome,
    check_batch_shape,
    check_events,
    commit_batch,
    open_stream,
)
from cloud.ingest.registry import StreamRegistry, StreamTicket
from cloud.store import Store
from cloud.timestamps import Clock, system_clock_us, to_micros

__all__ = [
    "BATCH_BYTES_HEADROOM_MAX",
    "COMMITTED_RANGES_MAX",
    "HELLO_TIMEOUT_S",
    "ON_COMMIT_TIMEOUT_S",
    "IngestService",
    "OnCommit",
]

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 30.0
# Committed seq ranges kept above the prefix per outbox: the edge's live tail is one moving range,
# a reconnect during a drain may start another; a few more leave slack for ranges not yet merged.
COMMITTED_RANGES_MAX = 8
# What Welcome.batch_bytes_max leaves below the message limit for the batch's own fields and framing
# (at most this, and at most 1/16 of the limit).
BATCH_BYTES_HEADROOM_MAX = 64 * 1024
# How long a new stream waits for the stream it superseded to finish its current batch.
SUPERSEDE_WAIT_S = 5.0
GATEWAY_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
OUTBOX_ID_LENGTH_MAX = 64
AGENT_VERSION_LENGTH_MAX = 128
# Clock offset samples a stream keeps; the estimate is their minimum.
CLOCK_OFFSET_SAMPLES_MAX = 16
# gateway_time must be a valid protobuf Timestamp: 0001-01-01 to 9999-12-31 UTC. A clock that
# is merely wrong (an RTC reset to 1970) is still measured and reported, not refused.
GATEWAY_TIME_SECONDS_MIN = -62_135_596_800
GATEWAY_TIME_SECONDS_MAX = 253_402_300_799

# Called after each batch's transaction committed, with the events it newly stored (never
# duplicates), before the Ack is sent; bounded by ON_COMMIT_TIMEOUT_S. Its failure is logged and
# never fails the batch: the events are committed whatever a subscriber of them does.
OnCommit = Callable[[Sequence[events_pb2.Event]], Awaitable[None]]
ON_COMMIT_TIMEOUT_S = 10.0

Messages = AsyncIterator[ingest_pb2.GatewayMessage]
Context = aio.ServicerContext[ingest_pb2.GatewayMessage, ingest_pb2.CloudMessage]


class _StopRequested(Exception):
    """The registry asked this stream to end (superseded, or shutdown)."""


class IngestService(ingest_pb2_grpc.IngestServiceServicer):
    """The uplink servicer; `stop_streams()` ends every stream for a graceful shutdown."""

    def __init__(
        self,
        store: Store,
        limits: IngestSection,
        clock: Clock = system_clock_us,
        on_commit: OnCommit | None = None,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._limits = limits
        self._clock = clock
        self._registry = StreamRegistry()
        self._authenticator = GatewayAuthenticator(limits.gateway_tokens)
        self._streams_open = 0  # streams being served, from before their Hello to their end

    @property
    def streams_open(self) -> int:
        """How many streams are being served now, including those still waiting for a Hello."""
        return self._streams_open

    @property
    def active_streams(self) -> int:
        """How many gateways are connected now."""
        return len(self._registry)

    async def stop_streams(self, wait_s: float) -> None:
        """Ask every stream to end with UNAVAILABLE and wait up to `wait_s` for them to finish."""
        tickets = self._registry.stop_all()
        if not tickets:
            return
        waits = [asyncio.ensure_future(ticket.finished.wait()) for ticket in tickets]
        _, pending = await asyncio.wait(waits, timeout=wait_s)
        for wait in pending:
            wait.cancel()
        if pending:
            log.warning("uplink streams still running after the grace period", extra={"streams": len(pending)})

    async def Stream(self, request_iterator: Messages, context: Context) -> AsyncIterator[ingest_pb2.CloudMessage]:
        """Serve one gateway's uplink stream until it closes, breaks the protocol, or is stopped."""
        token_gateway_id = await self._authenticate(context)
        if self._streams_open >= self._limits.max_streams:
            log.warning("refused an uplink stream: at the stream limit", extra={"peer": context.peer()})
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the cloud already serves its limit of {self._limits.max_streams} uplink streams "
                "([ingest].max_streams); retry later",
            )
        self._streams_open += 1
        try:
            messages = aiter(request_iterator)
            hello = await _read_hello(messages, context)
            await _check_claim(token_gateway_id, hello, context)
        except BaseException:
            self._streams_open -= 1
            raise
        clock_offset = _ClockOffset()
        clock_offset.add(self._clock(), hello.gateway_time if hello.HasField("gateway_time") else None)
        ticket, previous = self._registry.claim(hello.gateway_id, context.peer())
        fields = {"gateway_id": hello.gateway_id, "outbox_id": hello.outbox_id, "peer": context.peer()}
        ended = "closed by the gateway"
        try:
            if previous is not None:
                log.warning(
                    "gateway opened a new stream; superseding the old one",
                    extra={**fields, "old_peer": previous.peer},
                )
                await _wait_finished(previous)
            opened = await open_stream(self._store, hello, self._clock(), clock_offset.estimate_ms)
            _log_hello(hello, opened, fields)
            yield ingest_pb2.CloudMessage(
                welcome=ingest_pb2.Welcome(
                    resume_after_seq=opened.state.committed_through_seq,
                    max_batch_events=self._limits.max_batch_events,
                    max_unacked_batches=self._limits.max_unacked_batches,
                    accepts_status=True,
                    accepts_ranges=True,
                    committed_ranges=[
                        ingest_pb2.SeqRange(first_seq=first, last_seq=last)
                        for first, last in opened.state.committed_ranges
                    ],
                    max_committed_ranges=COMMITTED_RANGES_MAX,
                    batch_bytes_max=_batch_bytes_max(self._limits.max_message_bytes),
                )
            )
            async with aclosing(_batches(messages, ticket)) as batches:
                async for batch in batches:
                    if isinstance(batch, ingest_pb2.GatewayStatus):  # alarms: stored, never acked
                        await self._handle_status(hello, batch)
                        continue
                    outcome = await self._handle_batch(hello, batch, clock_offset)
                    yield ingest_pb2.CloudMessage(ack=outcome.ack)
        except _StopRequested:
            assert ticket.stop_code is not None
            ended = ticket.stop_message
            await context.abort(ticket.stop_code, ticket.stop_message)
        except ProtocolError as exc:
            ended = f"protocol error: {exc}"
            log.warning("gateway broke the uplink protocol", extra={**fields, "error": str(exc)})
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreError as exc:
            ended = f"store error: {exc}"
            log.error("store failed during ingest; the gateway will retry", extra={**fields, "error": str(exc)})
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the cloud could not store the batch: {exc}")
        except asyncio.CancelledError:
            ended = "cancelled (connection lost or deadline)"
            raise
        except Exception:
            ended = "internal error"
            log.exception("uplink stream failed", extra=fields)
            raise
        finally:
            self._registry.release(ticket)
            self._streams_open -= 1
            log.info("gateway disconnected", extra={**fields, "reason": ended})

    async def _authenticate(self, context: Context) -> str | None:
        """The gateway the stream's token belongs to (None when tokens are off); abort when it has none."""
        try:
            return self._authenticator.gateway_of(context.invocation_metadata() or ())
        except AuthFailure as failure:
            log.warning("refused an uplink stream", extra={"peer": context.peer(), "error": failure.message})
            await context.abort(failure.code, failure.message)

    async def _after_commit(self, stored: Sequence[events_pb2.Event], fields: Mapping[str, object]) -> None:
        assert self._on_commit is not None
        try:
            async with asyncio.timeout(ON_COMMIT_TIMEOUT_S):
                await self._on_commit(stored)
        except Exception:  # includes TimeoutError; CancelledError (stream gone) propagates
            log.exception("post-commit hook failed; the batch stays committed", extra=fields)

    async def _handle_status(self, hello: ingest_pb2.Hello, status: ingest_pb2.GatewayStatus) -> None:
        """Store the gateway's alarms (`cloud.gateway_alarms`); an out-of-contract status ends the stream."""
        check_status(status)
        await save_gateway_status(self._store, hello.gateway_id, status, self._clock())
        active = [alarm.code for alarm in status.alarms if alarm.active]
        log.info(
            "gateway status",
            extra={"gateway_id": hello.gateway_id, "alarms_active": ",".join(active) or "-"},
        )

    async def _handle_batch(
        self, hello: ingest_pb2.Hello, batch: ingest_pb2.EventBatch, clock_offset: _ClockOffset
    ) -> BatchOutcome:
        started = time.monotonic()
        check_batch_shape(batch, self._limits.max_batch_events)
        now_us = self._clock()
        if batch.HasField("gateway_time"):
            problem = _timestamp_problem(batch.gateway_time, f"batch {batch.batch_id}: gateway_time")
            if problem is not None:
                raise ProtocolError(problem)
            clock_offset.add(now_us, batch.gateway_time)
        checked = check_events(batch, hello.gateway_id, now_us, self._limits.max_event_time_ahead_ms)
        outcome = await commit_batch(
            self._store,
            hello.gateway_id,
            hello.outbox_id,
            batch.batch_id,
            checked,
            now_us,
            clock_offset.estimate_ms,
            follows_seq=batch.follows_seq if batch.HasField("follows_seq") else None,
            ranges_max=COMMITTED_RANGES_MAX,
        )
        fields = {
            "gateway_id": hello.gateway_id,
            "outbox_id": hello.outbox_id,
            "batch_id": batch.batch_id,
            "first_seq": batch.events[0].seq,
            "last_seq": batch.events[-1].seq,
        }
        if self._on_commit is not None and outcome.stored:
            await self._after_commit(outcome.stored, fields)
        for gap in outcome.gaps:
            log.warning(
                "seqs missing between batches; recorded as a gap",
                extra={**fields, "gap_first_seq": gap.first_seq, "gap_last_seq": gap.last_seq},
            )
        if outcome.ack.rejects:
            log.warning(
                "events quarantined",
                extra={
                    **fields,
                    "rejects": len(outcome.ack.rejects),
                    "first_reason": outcome.ack.rejects[0].reason,
                },
            )
        log.debug(
            "batch committed",
            extra={
                **fields,
                "accepted": outcome.ack.accepted,
                "duplicates": outcome.ack.duplicates,
                "committed_through_seq": outcome.ack.committed_through_seq,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return outcome


async def _read_hello(messages: Messages, context: Context) -> ingest_pb2.Hello:
    """The first message, which must be a well-formed Hello; abort the stream otherwise."""
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            first = await anext(messages, None)
    except TimeoutError:
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"no Hello within {HELLO_TIMEOUT_S:g} s")
    except DecodeError as exc:
        undecodable = f"message 1 of the stream is not a tallyport.v1.GatewayMessage: {exc}"
        log.warning("refused a Hello", extra={"peer": context.peer(), "error": undecodable})
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, undecodable)
    if first is None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stream ended before a Hello")
    body = first.WhichOneof("body")
    if body != "hello":
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"the first message must be a Hello, got {body or 'nothing'}"
        )
    problem = _hello_problem(first.hello)
    if problem is not None:
        log.warning("refused a Hello", extra={"peer": context.peer(), "error": problem})
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
    return first.hello


def _batch_bytes_max(max_message_bytes: int) -> int:
    """The largest batch of events a message of `max_message_bytes` holds with room for the rest."""
    return max_message_bytes - min(BATCH_BYTES_HEADROOM_MAX, max_message_bytes // 16)


def _hello_problem(hello: ingest_pb2.Hello) -> str | None:
    if GATEWAY_ID_PATTERN.fullmatch(hello.gateway_id) is None:
        return f"Hello.gateway_id {hello.gateway_id[:80]!r} must match ^[A-Za-z0-9._:-]{{1,64}}$"
    if not 0 < len(hello.outbox_id) <= OUTBOX_ID_LENGTH_MAX:
        return f"Hello.outbox_id must be 1 to {OUTBOX_ID_LENGTH_MAX} characters, got {len(hello.outbox_id)}"
    if hello.oldest_seq > SEQ_MAX:
        return f"Hello.oldest_seq {hello.oldest_seq} is above the maximum {SEQ_MAX}"
    if len(hello.agent_version) > AGENT_VERSION_LENGTH_MAX:
        return f"Hello.agent_version is longer than {AGENT_VERSION_LENGTH_MAX} characters"
    if hello.HasField("gateway_time"):
        return _timestamp_problem(hello.gateway_time, "Hello.gateway_time")
    return None


def _timestamp_problem(stamp: Timestamp, where: str) -> str | None:
    if not (GATEWAY_TIME_SECONDS_MIN <= stamp.seconds <= GATEWAY_TIME_SECONDS_MAX and 0 <= stamp.nanos < 10**9):
        return f"{where} ({stamp.seconds} s, {stamp.nanos} ns) is not a valid time"
    return None


async def _check_claim(token_gateway_id: str | None, hello: ingest_pb2.Hello, context: Context) -> None:
    """Abort with PERMISSION_DENIED when the stream's token is another gateway's than the Hello names."""
    try:
        check_claim(token_gateway_id, hello.gateway_id)
    except AuthFailure as failure:
        log.warning(
            "refused a stream claiming another gateway's id",
            extra={"peer": context.peer(), "gateway_id": hello.gateway_id, "error": failure.message},
        )
        await context.abort(failure.code, failure.message)


class _ClockOffset:
    """A stream's estimate of cloud time minus gateway time: the minimum of its recent samples.

    Transit and queueing only ever add to a sample, so the smallest recent one is the best guess;
    keeping only the last few lets the estimate follow a gateway whose clock is corrected.
    """

    def __init__(self) -> None:
        self._samples_ms: deque[int] = deque(maxlen=CLOCK_OFFSET_SAMPLES_MAX)

    def add(self, now_us: int, gateway_time: Timestamp | None) -> None:
        if gateway_time is not None:
            self._samples_ms.append((now_us - to_micros(gateway_time)) // 1000)

    @property
    def estimate_ms(self) -> int | None:
        return min(self._samples_ms) if self._samples_ms else None


async def _batches(
    messages: Messages, ticket: StreamTicket
) -> AsyncGenerator[ingest_pb2.EventBatch | ingest_pb2.GatewayStatus, None]:
    """The batches (and statuses) after the Hello, until the gateway half-closes; raise _StopRequested when asked."""
    stop = asyncio.ensure_future(ticket.stop_requested.wait())
    read: asyncio.Future[ingest_pb2.GatewayMessage | None] | None = None
    index = 1  # the Hello was message 1
    try:
        while True:
            index += 1
            # No idle timeout: a quiet gateway may hold its stream for hours; keepalive pings
            # (set on the server) find dead connections.
            read = asyncio.ensure_future(anext(messages, None))
            await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                raise _StopRequested
            try:
                message = read.result()
            except DecodeError as exc:
                raise ProtocolError(
                    f"message {index} of the stream is not a tallyport.v1.GatewayMessage: {exc}"
                ) from exc
            if message is None:
                return
            if message.WhichOneof("body") == "status":
                yield message.status
                continue
            if message.WhichOneof("body") != "batch":
                raise ProtocolError(f"expected an EventBatch, got {message.WhichOneof('body') or 'nothing'}")
            yield message.batch
    finally:
        stop.cancel()
        if read is not None and not read.done():
            read.cancel()


async def _wait_finished(previous: StreamTicket) -> None:
    """Let the superseded stream finish its batch, so the Welcome reflects its last commit."""
    try:
        async with asyncio.timeout(SUPERSEDE_WAIT_S):
            await previous.finished.wait()
    except TimeoutError:
        log.warning("superseded stream still running; continuing", extra={"gateway_id": previous.gateway_id})


def _log_hello(hello: ingest_pb2.Hello, opened: HelloOutcome, fields: dict[str, str]) -> None:
    if opened.new_outbox and opened.other_outbox_ids:
        log.info(
            "gateway started a new outbox; its seqs start again at 0",
            extra={**fields, "previous_outboxes": ",".join(opened.other_outbox_ids)},
        )
    elif opened.new_outbox:
        log.info("first contact with gateway", extra=fields)
    for gap in opened.gaps:
        log.warning(
            "seqs not in the edge outbox at hello; recorded as a gap",
            extra={**fields, "gap_first_seq": gap.first_seq, "gap_last_seq": gap.last_seq},
        )
    log.info(
        "gateway connected",
        extra={
            **fields,
            "agent_version": hello.agent_version,
            "oldest_seq": hello.oldest_seq,
            "resume_after_seq": opened.state.committed_through_seq,
        },
    )
