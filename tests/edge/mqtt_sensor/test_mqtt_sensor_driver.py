"""The MQTT sensor driver against a real broker, fed by simulated climate sensors on a wildcard topic."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

from edge.drivers.mqtt_sensor import MqttSensorConfig, MqttSensorDriver
from hw_sim.mqtt_sensors import ClimateSample, ClimateSensorPublisher

STARTED_AT = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
WAIT_S = 5.0


async def test_scripted_readings_arrive_mapped_and_a_failed_probe_is_rejected(
    mqtt_broker: tuple[str, int], mqtt_broker_kind: str, mqtt_topic_prefix: str
) -> None:
    host, port = mqtt_broker
    config = MqttSensorConfig(
        name="cold-room",
        broker_host=host,
        broker_port=port,
        client_id=f"tallyport-test-{uuid.uuid4().hex[:12]}",
        topic=f"{mqtt_topic_prefix}/+/climate",
        read_point="cold-room",
        device_id_field="dev",
        time_field="ts",
        fields=[
            {"path": "temp", "measurement": "Temperature", "uom": "CEL"},
            {"path": "env.rh", "measurement": "RelativeHumidity", "uom": "P1"},
        ],
        protocol="3.1.1" if mqtt_broker_kind == "amqtt" else "5",
        session_expiry_s=60,
        reconnect_delay_ms_initial=10,
        reconnect_delay_ms_max=100,
    )
    script = [
        ClimateSample("coldroom-1", 0, 3.5, 70.0),
        ClimateSample("coldroom-2", 30, 4.0, 72.5),
        ClimateSample("coldroom-1", 60, 9.25, None),  # the humidity probe has failed
    ]
    publisher = ClimateSensorPublisher(host, port, topic_template=f"{mqtt_topic_prefix}/{{device_id}}/climate")
    async with MqttSensorDriver(config, rng=random.Random(1)) as driver:
        messages = driver.messages()
        await publisher.run(script, speedup=600, started_at=STARTED_AT)
        received = []
        async with asyncio.timeout(WAIT_S):
            while len(received) < len(script):
                message = await anext(messages)
                received.append(message)
                await driver.acknowledge(message.token)
        await messages.aclose()
    readings = [(r.device_id, r.measurement, r.value, r.seen_at) for m in received for r in m.items]
    assert readings == [
        ("coldroom-1", "Temperature", 3.5, STARTED_AT),
        ("coldroom-1", "RelativeHumidity", 70.0, STARTED_AT),
        ("coldroom-2", "Temperature", 4.0, STARTED_AT + timedelta(seconds=30)),
        ("coldroom-2", "RelativeHumidity", 72.5, STARTED_AT + timedelta(seconds=30)),
        ("coldroom-1", "Temperature", 9.25, STARTED_AT + timedelta(seconds=60)),
    ]
    assert [m.rejects for m in received] == [(), (), ("item 0: no env",)]
    assert received[2].source == f"{mqtt_topic_prefix}/coldroom-1/climate"
