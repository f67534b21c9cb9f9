"""Simulated fixed readers that publish to a real MQTT broker: a Zebra IoT Connector and an Impinj R700.

    publisher = ZebraMqttPublisher(host, port, tag_topic="zebra/dock4/data", event_topic="zebra/dock4/events")
    await publisher.run(reads, speedup=20)

Items are published in time order with their own spacing divided by ``speedup``, at QoS 1 (the readers'
IoT endpoints publish at QoS 1 when configured to). The Zebra publisher can batch consecutive tag reads into
JSON arrays, as the IoT Connector does with batching enabled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import aiomqtt

from hw_sim.rfid_readers.formats import (
    EpcEncoding,
    ReaderItem,
    TagReadLike,
    impinj_event,
    in_time_order,
    json_bytes,
    zebra_event,
)
from hw_sim.rfid_readers.timing import ReplayClock

__all__ = ["ImpinjMqttPublisher", "ZebraMqttPublisher"]

PUBLISH_TIMEOUT_S = 5.0


class ZebraMqttPublisher:
    """Publishes tag data to ``tag_topic`` and GPI edges to ``event_topic`` in the IoT Connector's format."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tag_topic: str,
        event_topic: str,
        batch_max: int = 1,
        qos: int = 1,
    ) -> None:
        assert batch_max >= 1
        self._host, self._port = host, port
        self._tag_topic, self._event_topic = tag_topic, event_topic
        self._batch_max = batch_max
        self._qos = qos
        self._event_number = 0
        self.published_total = 0

    async def run(self, items: Iterable[ReaderItem], *, speedup: float = 1.0) -> int:
        """Publish every item at its time; returns the number of MQTT messages sent."""
        clock = ReplayClock(speedup)
        batch: list[ReaderItem] = []
        async with aiomqtt.Client(self._host, self._port, identifier=f"sim-zebra-{uuid.uuid4().hex[:12]}") as client:
            for item in in_time_order(items):
                await clock.wait_until(item.seen_at)
                if isinstance(item, TagReadLike):
                    batch.append(item)
                    if len(batch) >= self._batch_max:
                        await self._publish_tags(client, batch)
                        batch = []
                    continue
                if batch:  # a GPI edge closes the pending batch: the reader reports in order
                    await self._publish_tags(client, batch)
                    batch = []
                await self._publish(client, self._event_topic, json_bytes(zebra_event(item, event_number=0)))
            if batch:
                await self._publish_tags(client, batch)
        return self.published_total

    async def _publish_tags(self, client: aiomqtt.Client, batch: list[ReaderItem]) -> None:
        events = []
        for item in batch:
            self._event_number += 1
            events.append(zebra_event(item, event_number=self._event_number))
        payload = json_bytes(events[0] if self._batch_max == 1 else events)
        await self._publish(client, self._tag_topic, payload)

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        await client.publish(topic, payload, qos=self._qos, timeout=PUBLISH_TIMEOUT_S)
        self.published_total += 1


class ImpinjMqttPublisher:
    """Publishes each event as one JSON object to ``topic``, as the R700's MQTT event output does."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        topic: str,
        hostname: str = "impinj-sim",
        epc_encoding: EpcEncoding = "both",
        qos: int = 1,
    ) -> None:
        self._host, self._port = host, port
        self._topic = topic
        self._hostname = hostname
        self._epc_encoding: EpcEncoding = epc_encoding
        self._qos = qos
        self.published_total = 0

    async def run(self, items: Iterable[ReaderItem], *, speedup: float = 1.0) -> int:
        """Publish every item at its time; returns the number of MQTT messages sent."""
        clock = ReplayClock(speedup)
        async with aiomqtt.Client(self._host, self._port, identifier=f"sim-impinj-{uuid.uuid4().hex[:12]}") as client:
            for item in in_time_order(items):
                await clock.wait_until(item.seen_at)
                event = impinj_event(item, hostname=self._hostname, epc_encoding=self._epc_encoding)
                await client.publish(self._topic, json_bytes(event), qos=self._qos, timeout=PUBLISH_TIMEOUT_S)
                self.published_total += 1
        return self.published_total
