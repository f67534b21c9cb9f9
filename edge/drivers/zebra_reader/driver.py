"""Asyncio driver for one Zebra fixed reader on the IoT Connector's MQTT endpoint: messages in, reads out.

    async with ZebraReaderDriver(config, rng=random.Random(seed)) as reader:
        async for message in reader.messages():
            ...  # commit message.items as events, message.payload + message.rejects to the quarantine
            await reader.acknowledge(message.token)

Each MQTT message becomes one ``DriverMessage`` carrying every ``TagRead`` / ``GpiEvent`` decoded from it
(readers batch reports into JSON arrays) and the rejects. The MQTT PUBACK is sent by ``acknowledge``, which
the agent calls only after the message's events and quarantine rows are committed; until then the broker
keeps the message and sends it again after a crash or a reconnect (see ``edge.drivers.mqtt_subscription``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from datetime import datetime
from types import TracebackType
from typing import Self

from edge.drivers.json_payload import Decoded
from edge.drivers.mqtt_subscription import AckToken, DriverMessage, MqttSubscription, decode_received, utc_now
from edge.drivers.zebra_reader.config import ZebraReaderConfig
from edge.drivers.zebra_reader.payload import ZebraItem, decode_zebra_payload

__all__ = ["ZebraReaderDriver"]


class ZebraReaderDriver:
    """One Zebra reader as an ``async with`` resource whose ``messages()`` yields decoded MQTT messages.

    ``rng`` drives the reconnect jitter; ``clock`` gives the receive time that stands in for a missing
    reader timestamp.
    """

    def __init__(
        self, config: ZebraReaderConfig, *, rng: random.Random, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._config = config
        self._subscription = MqttSubscription(
            config,
            device=config.name,
            broker_host=config.broker_host,
            client_id=config.client_id,
            topics=config.topics,
            rng=rng,
            clock=clock,
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

    async def messages(self) -> AsyncGenerator[DriverMessage[ZebraItem], None]:
        """Yield each message decoded, for as long as it is iterated; broker faults never escape."""
        # aclosing: breaking out of this loop must close the subscription's generator now, not at GC time.
        async with aclosing(self._subscription.messages()) as received_messages:
            async for received in received_messages:
                yield decode_received(received, self._decode)

    async def acknowledge(self, token: AckToken) -> None:
        """Acknowledge a message to the broker (PUBACK) once its events are committed to the outbox."""
        await self._subscription.acknowledge(token)

    def _decode(self, payload: bytes, received_at: datetime) -> Decoded[ZebraItem]:
        return decode_zebra_payload(
            payload,
            reader=self._config.name,
            received_at=received_at,
            payload_bytes_max=self._config.payload_bytes_max,
        )
