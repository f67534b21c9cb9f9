"""Asyncio driver for climate sensors publishing JSON on MQTT: messages in, ``SensorReading``s out.

    async with MqttSensorDriver(config, rng=random.Random(seed)) as sensors:
        async for message in sensors.messages():
            ...  # commit message.items as sensor events, message.payload + message.rejects to the quarantine
            await sensors.acknowledge(message.token)

Each MQTT message becomes one ``DriverMessage`` with the readings mapped from it and the rejects; the PUBACK
is sent by ``acknowledge`` after the commit (see ``edge.drivers.mqtt_subscription``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from datetime import datetime
from types import TracebackType
from typing import Self

from edge.drivers.json_payload import Decoded
from edge.drivers.mqtt_sensor.config import MqttSensorConfig
from edge.drivers.mqtt_sensor.payload import decode_sensor_payload
from edge.drivers.mqtt_subscription import AckToken, DriverMessage, MqttSubscription, decode_received, utc_now
from edge.pipeline.reads import SensorReading

__all__ = ["MqttSensorDriver"]


class MqttSensorDriver:
    """The sensors on one topic filter as an ``async with`` resource whose ``messages()`` yields readings.

    ``rng`` drives the reconnect jitter; ``clock`` gives the receive time used when a payload has no time.
    """

    def __init__(
        self, config: MqttSensorConfig, *, rng: random.Random, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._config = config
        self._subscription = MqttSubscription(
            config,
            device=config.name,
            broker_host=config.broker_host,
            client_id=config.client_id,
            topics=(config.topic,),
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

    async def messages(self) -> AsyncGenerator[DriverMessage[SensorReading], None]:
        """Yield each message decoded, for as long as it is iterated; broker faults never escape."""
        async with aclosing(self._subscription.messages()) as received_messages:
            async for received in received_messages:
                yield decode_received(received, self._decode)

    async def acknowledge(self, token: AckToken) -> None:
        """Acknowledge a message to the broker (PUBACK) once its readings are committed to the outbox."""
        await self._subscription.acknowledge(token)

    def _decode(self, payload: bytes, received_at: datetime) -> Decoded[SensorReading]:
        return decode_sensor_payload(
            payload, self._config, received_at=received_at, payload_bytes_max=self._config.payload_bytes_max
        )
