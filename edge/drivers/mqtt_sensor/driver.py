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
from collections.abc import Callable
from datetime import datetime

from edge.drivers.json_payload import Decoded
from edge.drivers.mqtt_sensor.config import MqttSensorConfig
from edge.drivers.mqtt_sensor.payload import decode_sensor_payload
from edge.drivers.mqtt_subscription import DecodingMqttDriver, utc_now
from edge.pipeline.reads import SensorReading

__all__ = ["MqttSensorDriver"]


class MqttSensorDriver(DecodingMqttDriver[SensorReading]):
    """The sensors on one topic filter as an ``async with`` resource whose ``messages()`` yields readings.

    ``rng`` drives the reconnect jitter; ``clock`` gives the receive time used when a payload has no time.
    """

    def __init__(
        self, config: MqttSensorConfig, *, rng: random.Random, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._config = config
        super().__init__(
            config,
            device=config.name,
            broker_host=config.broker_host,
            client_id=config.client_id,
            topics=(config.topic,),
            rng=rng,
            clock=clock,
        )

    def _decode(self, payload: bytes, received_at: datetime) -> Decoded[SensorReading]:
        return decode_sensor_payload(
            payload, self._config, received_at=received_at, payload_bytes_max=self._config.payload_bytes_max
        )
