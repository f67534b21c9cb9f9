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
from collections.abc import Callable
from datetime import datetime

from edge.drivers.json_payload import Decoded
from edge.drivers.mqtt_subscription import DecodingMqttDriver, utc_now
from edge.drivers.zebra_reader.config import ZebraReaderConfig
from edge.drivers.zebra_reader.payload import ZebraItem, decode_zebra_payload

__all__ = ["ZebraReaderDriver"]


class ZebraReaderDriver(DecodingMqttDriver[ZebraItem]):
    """One Zebra reader as an ``async with`` resource whose ``messages()`` yields decoded MQTT messages.

    ``rng`` drives the reconnect jitter; ``clock`` gives the receive time that stands in for a missing
    reader timestamp.
    """

    def __init__(
        self, config: ZebraReaderConfig, *, rng: random.Random, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._config = config
        super().__init__(
            config,
            device=config.name,
            broker_host=config.broker_host,
            client_id=config.client_id,
            topics=config.topics,
            rng=rng,
            clock=clock,
        )

    def _decode(self, payload: bytes, received_at: datetime) -> Decoded[ZebraItem]:
        return decode_zebra_payload(
            payload,
            reader=self._config.name,
            received_at=received_at,
            payload_bytes_max=self._config.payload_bytes_max,
        )
