"""One MQTT subscription that outlives the broker connection, with acknowledgement after commit.

Used by the MQTT drivers (``zebra_reader``, ``impinj_reader`` in MQTT mode, ``mqtt_sensor``)::

    async with MqttSubscription(config, device=..., broker_host=..., client_id=..., topics=[...], rng=rng) as sub:
        async for message in sub.messages():
            ...  # decode, commit the events (or the quarantine row) to the outbox
            await sub.acknowledge(message.token)

Delivery (DESIGN.md: "a read is acknowledged to its source only after the event it produced is committed"):

* paho-mqtt acknowledges a QoS 1 PUBLISH as soon as its ``on_message`` callback returns, which aiomqtt uses
  to put the message on its queue: the PUBACK would leave before the agent has even seen the message.
  aiomqtt 2.5 has no option for manual acknowledgement, but its ``Client`` wraps one paho ``Client``, and
  paho 2.x has ``manual_ack_set(True)`` and ``ack(mid, qos)``. This module reaches that paho client (the
  private ``aiomqtt.Client._client``, checked on every connect, see ``_paho_client``), turns manual
  acknowledgement on before connecting, and sends the PUBACK from ``acknowledge``.
* The broker keeps an unacknowledged message and sends it again when the same client id reconnects to its
  persistent session: MQTT 5 with ``clean_start = False`` and a session expiry interval, or MQTT 3.1.1 with
  ``clean_session = False``. A crash, a ``kill -9`` or a network cut between receipt and commit therefore
  ends in a redelivery (a duplicate the pipeline must tolerate), never in a loss.
* A packet id is only meaningful on the connection it arrived on: a token from an earlier connection is
  not sent (the broker redelivers that message anyway), so a reused id can never acknowledge the wrong
  message.
* Only QoS 0 and 1 are offered. With QoS 2 paho answers PUBREC on receipt and keeps the in-flight state in
  memory only, so a crash before commit would lose the message.

Bounds: MQTT 5 "Receive Maximum" (``inflight_messages_max``) caps how many unacknowledged messages the broker
sends; the local queue holds ``message_queue_max``. A broker can still overfill the queue (MQTT 3.1.1 has no
receive maximum, and Mosquitto 2.0.11 was seen sending past it when resuming a session). A QoS 1 message
that does not fit is not acknowledged; once the queue has been handed over the subscription reconnects, and
the broker sends it again. A QoS 0 message that does not fit is lost and counted.

aiomqtt runs paho's blocking ``connect()`` in the event loop's default executor (a thread pool it does
not own either); everything else runs on the event loop. paho/aiomqtt errors are translated here, at this
one boundary, into ``edge.errors.DeviceError``; ``messages()`` never raises for a broker fault.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from edge.backoff import Backoff
from edge.drivers.json_payload import Decoded
from edge.errors import DeviceError

__all__ = [
    "NO_ACK",
    "AckToken",
    "DriverMessage",
    "MqttConnectionConfig",
    "MqttSubscription",
    "ReceivedMessage",
    "decode_received",
    "utc_now",
    "validate_topic_filter",
]

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")

# How long one wait for the next message lasts before the loop looks at its own state again (a queue that
# overflowed while the broker is holding back); a quiet topic just loops.
RECEIVE_WAIT_MS = 1000
CLOSE_TIMEOUT_MS = 2000
# A connection that lasted this long was healthy: its loss starts the backoff again from the initial delay.
# A shorter one (a broker that accepts and then drops us, or a second client stealing our client id) keeps
# the backoff growing.
CONNECTION_STABLE_MS = 10_000
# Room in an MQTT 5 "Maximum Packet Size" for the fixed header, the topic (at most 65535 bytes) and properties.
PACKET_OVERHEAD_BYTES = 65_535 + 1024
_SUBACK_FAILURE = 0x80
_subscription_ids = itertools.count(1)


def utc_now() -> datetime:
    """The default receive clock: wall time, UTC."""
    return datetime.now(UTC)


def validate_topic_filter(topic: str) -> str:
    """A topic filter as MQTT allows it (``+`` a whole level, ``#`` last); ``ValueError`` otherwise."""
    try:
        aiomqtt.Wildcard(topic)
    except ValueError as exc:
        raise ValueError(f"topic filter {topic!r}: {exc}") from None
    if "\x00" in topic:
        raise ValueError(f"topic filter {topic!r} contains NUL")
    return topic


class MqttConnectionConfig(BaseModel):
    """Broker connection options shared by the ``[[zebra_reader]]``, ``[[impinj_reader]]`` and ``[[mqtt_sensor]]``
    tables. The host, client id and topics are declared by each table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker_port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    qos: Literal[0, 1] = Field(
        default=1, description="1: at least once, acknowledged after commit; 0: at most once, for data you can lose."
    )
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=86_400, ge=60, le=4_294_967_294)
    inflight_messages_max: int = Field(default=100, ge=1, le=65_535)
    message_queue_max: int = Field(default=1000, ge=1, le=100_000)
    payload_bytes_max: int = Field(default=262_144, ge=1024, le=16_777_216)
    connect_timeout_ms: int = Field(default=5000, ge=100, le=120_000)
    reconnect_delay_ms_initial: int = Field(default=200, ge=10, le=60_000)
    reconnect_delay_ms_max: int = Field(default=30_000, ge=10, le=600_000)

    @model_validator(mode="after")
    def _check_connection_together(self) -> Self:
        if self.reconnect_delay_ms_max < self.reconnect_delay_ms_initial:
            raise ValueError(
                f"reconnect_delay_ms_max ({self.reconnect_delay_ms_max}) must be >= "
                f"reconnect_delay_ms_initial ({self.reconnect_delay_ms_initial})"
            )
        if self.message_queue_max < self.inflight_messages_max:
            raise ValueError(
                f"message_queue_max ({self.message_queue_max}) must be >= inflight_messages_max "
                f"({self.inflight_messages_max}), or every full window of messages overflows the queue"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        return self


@dataclass(frozen=True)
class AckToken:
    """What ``acknowledge`` needs to answer one message: whose, on which connection, its packet id and QoS."""

    subscription: int
    connection: int
    mid: int
    qos: int


NO_ACK = AckToken(subscription=0, connection=0, mid=0, qos=0)
"""The token of a message that needs no answer (QoS 0, or a source without acknowledgements)."""


@dataclass(frozen=True)
class ReceivedMessage:
    """One MQTT message as the broker delivered it."""

    topic: str
    payload: bytes
    qos: int
    retained: bool
    received_at: datetime
    token: AckToken


@dataclass(frozen=True)
class DriverMessage(Generic[ItemT]):
    """One message from a device, decoded: what a streaming driver yields.

    Commit ``items`` as events and, when ``rejects`` is not empty, ``payload`` with the rejects to the
    quarantine; then hand ``token`` to the driver's ``acknowledge``.
    """

    source: str  # MQTT topic, or the stream URL
    payload: bytes
    received_at: datetime
    items: tuple[ItemT, ...]
    rejects: tuple[str, ...]
    ignored: Mapping[str, int] = field(default_factory=dict)
    token: AckToken = NO_ACK


def decode_received(
    received: ReceivedMessage, decode: Callable[[bytes, datetime], Decoded[ItemT]]
) -> DriverMessage[ItemT]:
    """Decode one received message with a pure codec ``decode(payload, received_at)``.

    A retained message (MQTT 3.1.1 replays them on every subscribe; MQTT 5 subscriptions here ask for none)
    is an old report, not a new observation: it is counted as ignored and decodes to nothing.
    """
    if received.retained:
        decoded: Decoded[ItemT] = Decoded(ignored={"retained message": 1})
    else:
        decoded = decode(received.payload, received.received_at)
    return DriverMessage(
        source=received.topic,
        payload=received.payload,
        received_at=received.received_at,
        items=decoded.items,
        rejects=decoded.rejects,
        ignored=decoded.ignored,
        token=received.token,
    )


class _ResyncNeeded(Exception):
    """The local queue dropped a QoS 1 message; reconnect so that the broker sends it again."""


class MqttSubscription:
    """A subscription to ``topics`` on one broker that reconnects with backoff for as long as it is iterated.

    ``rng`` drives the reconnect jitter, ``clock`` stamps each message's receive time.
    """

    def __init__(
        self,
        config: MqttConnectionConfig,
        *,
        device: str,
        broker_host: str,
        client_id: str,
        topics: Sequence[str],
        rng: random.Random,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        assert topics, "a subscription needs at least one topic"
        self._config = config
        self._device = device
        self._host = broker_host
        self._client_id = client_id
        self._topics = tuple(topics)
        self._clock = clock
        self._backoff = Backoff(
            delay_ms_initial=config.reconnect_delay_ms_initial,
            delay_ms_max=config.reconnect_delay_ms_max,
            rng=rng,
        )
        self._id = next(_subscription_ids)
        self._client: aiomqtt.Client | None = None
        self._connection = 0  # counts successful connections; part of every token
        self._connected_at = 0.0
        self._pending_get: asyncio.Task[aiomqtt.Message] | None = None
        # Packet ids handed out on the current connection and not yet acknowledged. Bounded by the packet id
        # space (65535) and in practice by the broker's in-flight window.
        self._unacked: dict[int, None] = {}
        self._resync_pending = False
        self._available: bool | None = None  # None: no connection attempted yet
        self._iterating = False
        self._downgrade_warned = False
        self.messages_total = 0
        self.reconnects_total = 0
        self.resyncs_total = 0
        self.dropped_qos0_total = 0
        self.stale_acks_total = 0

    @property
    def available(self) -> bool:
        """True while connected and subscribed."""
        return self._client is not None

    async def __aenter__(self) -> Self:
        """Try to connect once; a broker that is not there yet is retried by ``messages()``."""
        await self._try_connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._disconnect()

    async def messages(self) -> AsyncGenerator[ReceivedMessage, None]:
        """Yield messages as they arrive, reconnecting with backoff; broker faults never escape."""
        if self._iterating:
            raise RuntimeError(f"{self._device}: messages() is already being iterated")
        self._iterating = True
        try:
            while True:
                client = await self._connected_client()
                try:
                    message = await self._next_message(client)
                except DeviceError as exc:
                    await self._lose_connection(exc)
                    continue
                except _ResyncNeeded:
                    self.resyncs_total += 1
                    logger.info(
                        "%s: reconnecting so that the broker resends what the full queue could not take",
                        self._device,
                        extra=self._log_fields(),
                    )
                    await self._disconnect()
                    continue
                if message is not None:
                    yield self._accept(message)
        finally:
            self._iterating = False

    async def acknowledge(self, token: AckToken) -> None:
        """Send the PUBACK for a message, after what it produced is committed.

        A no-op for QoS 0 messages. Tokens may be held while more messages are taken (to commit several in one
        transaction); they stay good for as long as the connection lasts. A token from an earlier connection
        is counted and dropped: that message has been, or will be, delivered again by the broker, and its
        packet id may now name another message.
        """
        if token.qos == 0:
            return
        if token.subscription != self._id:
            raise ValueError(f"{self._device}: token {token} belongs to another subscription")
        client = self._client
        if client is None or token.connection != self._connection or token.mid not in self._unacked:
            self.stale_acks_total += 1
            logger.debug(
                "%s: not acknowledging message %d of connection %d (now %d): the broker will resend it",
                self._device,
                token.mid,
                token.connection,
                self._connection,
                extra=self._log_fields(mid=token.mid),
            )
            return
        del self._unacked[token.mid]
        # paho queues the PUBACK and aiomqtt's writer callback sends it from the event loop; nothing to await.
        result = _paho_client(client).ack(token.mid, token.qos)
        if result != paho_mqtt.MQTT_ERR_SUCCESS:
            logger.warning(
                "%s: PUBACK for message %d not queued: %s; the broker will resend it",
                self._device,
                token.mid,
                paho_mqtt.error_string(result),
                extra=self._log_fields(mid=token.mid),
            )

    async def _connected_client(self) -> aiomqtt.Client:
        while self._client is None:
            if self._available is False:  # the last attempt failed or the connection was lost: back off
                await asyncio.sleep(self._backoff.next_delay_s())
            await self._try_connect()
        return self._client

    async def _try_connect(self) -> None:
        try:
            await self._connect()
        except DeviceError as exc:
            self._mark_unavailable(exc)

    async def _connect(self) -> None:
        config = self._config
        # Reset before connecting, not after: a resumed session's backlog arrives right after CONNACK, before
        # the SUBACK, and may already overflow the new queue.
        self._resync_pending = False
        client = self._new_client()
        connect_timeout_s = config.connect_timeout_ms / 1000
        try:
            # paho bounds the TCP connect and aiomqtt the wait for CONNACK, each by connect_timeout; this outer
            # bound also covers the name lookup, which neither of them does.
            async with asyncio.timeout(3 * connect_timeout_s):
                await client.__aenter__()
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            raise _translate(exc, f"connecting to {self._host}:{config.broker_port}") from exc
        try:
            async with asyncio.timeout(2 * connect_timeout_s):
                granted = await client.subscribe(self._subscription_list(), timeout=connect_timeout_s)
            self._check_granted(granted)
        except (aiomqtt.MqttError, OSError, TimeoutError, DeviceError) as exc:
            await _close_client(client, self._device)
            raise _translate(exc, f"subscribing to {list(self._topics)}") from exc
        if self._connection > 0:
            self.reconnects_total += 1
        self._connection += 1
        self._client = client
        self._connected_at = asyncio.get_running_loop().time()
        self._unacked.clear()
        self._mark_available()

    def _new_client(self) -> aiomqtt.Client:
        config = self._config
        protocol_options: dict[str, Any]
        if config.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
            properties.SessionExpiryInterval = config.session_expiry_s
            properties.ReceiveMaximum = config.inflight_messages_max
            properties.MaximumPacketSize = config.payload_bytes_max + PACKET_OVERHEAD_BYTES
            # clean_start=False on every connection, the first included: the session (and the messages the
            # broker kept for us while we were away) must survive an agent restart.
            protocol_options = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": False,
                "properties": properties,
            }
        else:
            protocol_options = {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
        client = aiomqtt.Client(
            self._host,
            config.broker_port,
            username=config.username,
            password=None if config.password is None else config.password.get_secret_value(),
            identifier=self._client_id,
            logger=logging.getLogger(f"{__name__}.paho"),
            queue_type=_overflow_aware_queue(self._on_queue_full),
            keepalive=config.keepalive_s,
            timeout=config.connect_timeout_ms / 1000,
            max_queued_incoming_messages=config.message_queue_max,
            **protocol_options,
        )
        paho = _paho_client(client)
        paho.manual_ack_set(True)
        paho.connect_timeout = config.connect_timeout_ms / 1000
        return client

    def _subscription_list(self) -> list[tuple[str, Any]]:
        if self._config.protocol == "5":
            # Retain handling 2: no retained message on (re)subscribing. A retained report is an old one, and
            # every reconnect would replay it.
            options = SubscribeOptions(qos=self._config.qos, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            return [(topic, options) for topic in self._topics]
        return [(topic, self._config.qos) for topic in self._topics]

    def _check_granted(self, granted: Sequence[Any]) -> None:
        for topic, code in zip(self._topics, granted, strict=False):
            value = int(getattr(code, "value", code))  # MQTT 5 gives ReasonCodes, 3.1.1 plain integers
            if value >= _SUBACK_FAILURE:
                raise DeviceError(f"the broker refused the subscription to {topic!r} (code {value:#x})")
            if value < self._config.qos and not self._downgrade_warned:
                self._downgrade_warned = True
                logger.warning(
                    "%s: the broker granted QoS %d on %r instead of %d: messages on it can be lost",
                    self._device,
                    value,
                    topic,
                    self._config.qos,
                    extra=self._log_fields(topic=topic),
                )

    async def _next_message(self, client: aiomqtt.Client) -> aiomqtt.Message | None:
        """The next message, or None after ``RECEIVE_WAIT_MS`` without one.

        The wait for the queue is one task that survives the timeout: cancelling aiomqtt's ``__anext__`` just
        as it took a message off the queue would lose that message until the next reconnect.
        """
        if self._pending_get is None:
            if self._resync_pending and len(client.messages) == 0:
                raise _ResyncNeeded
            self._pending_get = asyncio.ensure_future(anext(client.messages))
        await asyncio.wait({self._pending_get}, timeout=RECEIVE_WAIT_MS / 1000)
        if not self._pending_get.done():
            if self._resync_pending:
                raise _ResyncNeeded  # the broker is holding back until the dropped messages are acknowledged
            return None
        task, self._pending_get = self._pending_get, None
        try:
            return task.result()
        except aiomqtt.MqttError as exc:
            raise _translate(exc, "receiving") from exc

    def _accept(self, message: aiomqtt.Message) -> ReceivedMessage:
        payload = message.payload
        # paho always hands over bytes; aiomqtt's type also allows what a publisher may pass in.
        data = bytes(payload) if isinstance(payload, (bytes, bytearray)) else str(payload).encode()
        token = NO_ACK
        if message.qos > 0:
            token = AckToken(self._id, self._connection, message.mid, message.qos)
            self._unacked[message.mid] = None
        self.messages_total += 1
        return ReceivedMessage(
            topic=message.topic.value,
            payload=data,
            qos=message.qos,
            retained=message.retain,
            received_at=self._clock(),
            token=token,
        )

    def _on_queue_full(self, message: aiomqtt.Message) -> None:
        # Called from paho's read callback on the event loop.
        if message.qos == 0:
            self.dropped_qos0_total += 1
            logger.warning(
                "%s: queue full (%d), QoS 0 message on %s lost",
                self._device,
                self._config.message_queue_max,
                message.topic.value,
                extra=self._log_fields(topic=message.topic.value),
            )
            return
        if not self._resync_pending:
            logger.warning(
                "%s: queue full (%d); messages left unacknowledged will be fetched again",
                self._device,
                self._config.message_queue_max,
                extra=self._log_fields(),
            )
        self._resync_pending = True

    async def _lose_connection(self, error: DeviceError) -> None:
        uptime_ms = (asyncio.get_running_loop().time() - self._connected_at) * 1000
        if uptime_ms >= CONNECTION_STABLE_MS:
            self._backoff.reset()
        await self._disconnect()
        self._mark_unavailable(error)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        self._unacked.clear()
        await self._stop_pending_get()
        if client is not None:
            await _close_client(client, self._device)

    async def _stop_pending_get(self) -> None:
        task, self._pending_get = self._pending_get, None
        if task is None:
            return
        task.cancel()
        # Wait for it to finish so its outcome is collected; a message it took just before the cancel is left
        # unacknowledged and comes again on the next connection.
        await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_MS / 1000)
        if task.done() and not task.cancelled():
            task.exception()

    def _mark_available(self) -> None:
        previous, self._available = self._available, True
        fields = self._log_fields(available=True, connection=self._connection)
        if previous is False:
            logger.warning("%s: broker %s available again", self._device, self._host, extra=fields)
        elif previous is None:
            logger.info("%s: subscribed to %s on %s", self._device, list(self._topics), self._host, extra=fields)

    def _mark_unavailable(self, error: DeviceError) -> None:
        previous, self._available = self._available, False
        fields = self._log_fields(error=str(error), error_kind=type(error).__name__, available=False)
        if previous is False:
            logger.debug("%s: broker still unavailable: %s", self._device, error, extra=fields)
        else:
            logger.warning("%s: broker unavailable, reconnecting with backoff: %s", self._device, error, extra=fields)

    def _log_fields(self, **fields: Any) -> dict[str, Any]:
        return {
            "device": self._device,
            "broker": f"{self._host}:{self._config.broker_port}",
            "client_id": self._client_id,
            **fields,
        }


def _paho_client(client: aiomqtt.Client) -> paho_mqtt.Client:
    """The paho client inside an aiomqtt client: aiomqtt 2.x keeps it in ``_client`` and offers no manual ack."""
    paho = getattr(client, "_client", None)
    if not isinstance(paho, paho_mqtt.Client) or not hasattr(paho, "manual_ack_set"):
        # Without it every message would be acknowledged on receipt: refuse to run rather than lose reads.
        raise RuntimeError(
            "aiomqtt.Client no longer exposes its paho client as _client (or paho lacks manual_ack_set); "
            "acknowledgement after commit is impossible with this aiomqtt/paho version"
        )
    return paho


def _overflow_aware_queue(
    on_full: Callable[[aiomqtt.Message], None],
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's queue class, bounded as before, telling us which message it could not take."""

    class OverflowAwareQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            if self.full():
                on_full(item)  # and not QueueFull: aiomqtt would log one warning per dropped message
                return
            super().put_nowait(item)

    return OverflowAwareQueue


async def _close_client(client: aiomqtt.Client, device: str) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_MS / 1000):
            await client.__aexit__(None, None, None)
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        # A connection that failed reports that failure again on close; it is closed all the same.
        logger.debug("%s: connection closed with error: %s", device, exc)


def _translate(exc: BaseException, what: str) -> DeviceError:
    """aiomqtt/paho/OS error → ours."""
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeviceError(f"{what}: timed out")
    cause = exc.__cause__
    detail = f"{exc} ({cause})" if cause is not None and str(cause) else str(exc)
    return DeviceError(f"{what}: {type(exc).__name__}: {detail}")


class DecodingMqttDriver(Generic[ItemT]):
    """A device on MQTT as an ``async with`` resource: subscribe, decode each message with ``_decode``, ack.

    The shape every MQTT driver shares (Zebra readers, MQTT sensors); a subclass names its topics and its
    codec. ``rng`` drives the reconnect jitter; ``clock`` gives the receive time.
    """

    def __init__(
        self,
        config: MqttConnectionConfig,
        *,
        device: str,
        broker_host: str,
        client_id: str,
        topics: Sequence[str],
        rng: random.Random,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._subscription = MqttSubscription(
            config, device=device, broker_host=broker_host, client_id=client_id, topics=topics, rng=rng, clock=clock
        )

    @property
    def subscription(self) -> MqttSubscription:
        """The broker connection, for its availability and counters."""
        return self._subscription

    async def __aenter__(self) -> Self:
        await self._subscription.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._subscription.__aexit__(exc_type, exc, traceback)

    async def messages(self) -> AsyncGenerator[DriverMessage[ItemT], None]:
        """Yield each message decoded, for as long as it is iterated; broker faults never escape."""
        # aclosing: breaking out of this loop must close the subscription's generator now, not at GC time.
        async with aclosing(self._subscription.messages()) as received_messages:
            async for received in received_messages:
                yield decode_received(received, self._decode)

    async def acknowledge(self, token: AckToken) -> None:
        """Acknowledge a message to the broker (PUBACK) once what it produced is committed to the outbox."""
        await self._subscription.acknowledge(token)

    def _decode(self, payload: bytes, received_at: datetime) -> Decoded[ItemT]:
        raise NotImplementedError
