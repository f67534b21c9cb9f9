"""The Impinj driver in ``mqtt`` mode against a real broker, fed by the simulated R700's MQTT event output."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from edge.drivers.impinj_reader import ImpinjReaderConfig, ImpinjReaderDriver
from edge.pipeline.reads import GpiEvent, TagRead
from hw_sim.rfid_readers import ImpinjMqttPublisher

T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
WAIT_S = 5.0


async def test_events_with_only_base64_epcs_reach_the_driver_and_are_acknowledged(
    mqtt_broker: tuple[str, int], mqtt_broker_kind: str, mqtt_topic_prefix: str
) -> None:
    host, port = mqtt_broker
    config = ImpinjReaderConfig(
        name="dock2",
        mode="mqtt",
        broker_host=host,
        broker_port=port,
        topic=f"{mqtt_topic_prefix}/r700/events",
        client_id=f"tallyport-test-{uuid.uuid4().hex[:12]}",
        protocol="3.1.1" if mqtt_broker_kind == "amqtt" else "5",
        session_expiry_s=60,
        reconnect_delay_ms_initial=10,
        reconnect_delay_ms_max=100,
    )
    reads: list[TagRead | GpiEvent] = [
        GpiEvent("dock2", 1, "high", T0),
        *(
            TagRead("dock2", 1 + n % 2, f"31D4257BF4499602D2{n:06X}", T0 + timedelta(milliseconds=n), -70.25)
            for n in range(1, 6)
        ),
        GpiEvent("dock2", 1, "low", T0 + timedelta(milliseconds=10)),
    ]
    publisher = ImpinjMqttPublisher(host, port, topic=str(config.topic), epc_encoding="base64")
    async with ImpinjReaderDriver(config, rng=random.Random(1)) as driver:
        messages = driver.messages()
        sent = await publisher.run(reads, speedup=5)
        received = []
        async with asyncio.timeout(WAIT_S):
            while len(received) < sent:
                message = await anext(messages)
                received.append(message)
                await driver.acknowledge(message.token)
        await messages.aclose()
        assert driver.subscription is not None and driver.subscription.stale_acks_total == 0
    items = [replace(i, raw_sha256="") if isinstance(i, TagRead) else i for m in received for i in m.items]
    assert items == reads
    assert all(message.token.qos == 1 and message.rejects == () for message in received)
