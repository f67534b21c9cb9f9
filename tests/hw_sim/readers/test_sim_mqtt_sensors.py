"""The simulated climate sensors: payload shape and topics on a real broker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiomqtt

from hw_sim.mqtt_sensors import ClimateSample, ClimateSensorPublisher, climate_payload

STARTED_AT = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)


def test_payload_leaves_out_a_failed_probe() -> None:
    assert json.loads(climate_payload(ClimateSample("c1", 0, 4.5, 70.0), STARTED_AT)) == {
        "dev": "c1",
        "ts": "2025-03-03T06:00:00+00:00",
        "temp": 4.5,
        "env": {"rh": 70.0},
    }
    assert json.loads(climate_payload(ClimateSample("c1", 0, None, 70.0), STARTED_AT)) == {
        "dev": "c1",
        "ts": "2025-03-03T06:00:00+00:00",
        "env": {"rh": 70.0},
    }


async def test_samples_are_published_on_each_devices_topic_in_offset_order(
    mqtt_broker: tuple[str, int], mqtt_topic_prefix: str
) -> None:
    host, port = mqtt_broker
    script = [ClimateSample("c2", 20, 5.0, 60.0), ClimateSample("c1", 0, 4.0, 61.0)]
    publisher = ClimateSensorPublisher(host, port, topic_template=f"{mqtt_topic_prefix}/{{device_id}}")
    got = []
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"{mqtt_topic_prefix}/+", qos=1)
        task = asyncio.create_task(publisher.run(script, speedup=200, started_at=STARTED_AT))
        async with asyncio.timeout(5):
            async for message in client.messages:
                got.append(message.topic.value.rsplit("/", 1)[1])
                if len(got) == 2:
                    break
        assert await task == 2
    assert got == ["c1", "c2"]
