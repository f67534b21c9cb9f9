"""Asyncio driver for one Impinj R700/R720 (IoT Device Interface) over MQTT or the HTTP event stream.

    async with ImpinjReaderDriver(config, rng=random.Random(seed)) as reader:
        async for message in reader.messages():
            ...  # commit message.items as events, message.payload + message.rejects to the quarantine
            await reader.acknowledge(message.token)

Each MQTT message, or each line of the HTTP stream, becomes one ``DriverMessage`` with the ``TagRead`` /
``GpiEvent`` items decoded from it and the rejects. In ``mqtt`` mode ``acknowledge`` sends the PUBACK (see
``edge.drivers.mqtt_subscription``); in ``http_stream`` mode there is nothing to acknowledge (the token is
``NO_ACK``) and the call is a no-op, so the agent's loop is the same in both modes.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from datetime import datetime
from types import TracebackType
from typing import Self

import httpx

from edge.drivers.impinj_reader.config import ImpinjReaderConfig
from edge.drivers.impinj_reader.http_stream import ImpinjHttpStream, StreamLine
from edge.drivers.impinj_reader.payload import ImpinjItem, decode_impinj_payload
from edge.drivers.json_payload import Decoded
from edge.drivers.mqtt_subscription import AckToken, DriverMessage, MqttSubscription, decode_received, utc_now

__all__ = ["ImpinjReaderDriver"]


class ImpinjReaderDriver:
    """One Impinj reader as an ``async with`` resource whose ``messages()`` yields decoded events.

    ``rng`` drives the reconnect jitter; ``clock`` gives the receive time that stands in for a missing
    reader timestamp; ``http_transport`` replaces httpx's network transport in ``http_stream`` mode.
    """

    def __init__(
        self,
        config: ImpinjReaderConfig,
        *,
        rng: random.Random,
        clock: Callable[[], datetime] = utc_now,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._subscription: MqttSubscription | None = None
        self._stream: ImpinjHttpStream | None = None
        if config.mode == "mqtt":
            assert config.broker_host is not None and config.client_id is not None and config.topic is not None
            self._subscription = MqttSubscription(
                config,
                device=config.name,
                broker_host=config.broker_host,
                client_id=config.client_id,
                topics=(config.topic,),
                rng=rng,
                clock=clock,
            )
        else:
            self._stream = ImpinjHttpStream(config, rng=rng, transport=http_transport)

    @property
    def subscription(self) -> MqttSubscription | None:
        """The broker connection in ``mqtt`` mode, for its availability and counters."""
        return self._subscription

    @property
    def stream(self) -> ImpinjHttpStream | None:
        """The HTTP event stream in ``http_stream`` mode, for its availability and counters."""
        return self._stream

    @property
    def available(self) -> bool:
        """True while connected to the broker or the stream is open."""
        if self._subscription is not None:
            return self._subscription.available
        return self._stream is not None and self._stream.available

    async def __aenter__(self) -> Self:
        if self._subscription is not None:
            await self._subscription.__aenter__()
        elif self._stream is not None:
            await self._stream.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._subscription is not None:
            await self._subscription.__aexit__(exc_type, exc, traceback)
        elif self._stream is not None:
            await self._stream.__aexit__(exc_type, exc, traceback)

    async def messages(self) -> AsyncGenerator[DriverMessage[ImpinjItem], None]:
        """Yield each message or stream line decoded, for as long as it is iterated; faults never escape."""
        if self._subscription is not None:
            async with aclosing(self._subscription.messages()) as received_messages:
                async for received in received_messages:
                    yield decode_received(received, self._decode)
        elif self._stream is not None:
            async with aclosing(self._stream.lines()) as lines:
                async for line in lines:
                    yield self._decode_line(line)

    async def acknowledge(self, token: AckToken) -> None:
        """Acknowledge a message once its events are committed: the PUBACK in ``mqtt`` mode, nothing otherwise."""
        if self._subscription is not None:
            await self._subscription.acknowledge(token)

    def _decode(self, payload: bytes, received_at: datetime) -> Decoded[ImpinjItem]:
        return decode_impinj_payload(
            payload,
            reader=self._config.name,
            received_at=received_at,
            payload_bytes_max=self._config.payload_bytes_max,
        )

    def _decode_line(self, line: StreamLine) -> DriverMessage[ImpinjItem]:
        received_at = self._clock()
        source = self._config.stream_url or ""
        if line.cut_bytes:
            decoded: Decoded[ImpinjItem] = Decoded(
                rejects=(
                    f"line of {len(line.data) + line.cut_bytes} bytes, over the {self._config.payload_bytes_max}-byte "
                    f"cap; only its first {len(line.data)} bytes are kept",
                )
            )
        elif not line.complete:
            decoded = Decoded(rejects=(f"line cut off after {len(line.data)} bytes by the stream's disconnect",))
        else:
            decoded = self._decode(line.data, received_at)
        return DriverMessage(
            source=source,
            payload=line.data,
            received_at=received_at,
            items=decoded.items,
            rejects=decoded.rejects,
            ignored=decoded.ignored,
        )
