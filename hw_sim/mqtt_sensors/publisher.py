"""Simulated climate sensors publishing scripted JSON readings to a real MQTT broker.

    script = [ClimateSample("coldroom-1", 0, 4.1, 71.0), ClimateSample("coldroom-1", 60, 9.5, 80.0)]
    await ClimateSensorPublisher(host, port, topic_template="sensors/{device_id}/climate").run(script, speedup=60)

Each sample becomes ``{"dev": ..., "temp": ..., "env": {"rh": ...}, "ts": ...}`` (the shape in the
``mqtt_sensor`` driver's sample config) on the device's topic, at its offset divided by ``speedup``. A value
left as None is left out of the payload, which is how a sensor with a failed probe behaves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt

from hw_sim.rfid_readers.formats import json_bytes
from hw_sim.rfid_readers.timing import ReplayClock

__all__ = ["ClimateSample", "ClimateSensorPublisher", "climate_payload"]

PUBLISH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ClimateSample:
    """One scripted reading: ``offset_s`` seconds after the script's start."""

    device_id: str
    offset_s: float
    temperature_c: float | None
    humidity_pct: float | None


def climate_payload(sample: ClimateSample, measured_at: datetime) -> bytes:
    """The JSON a simulated sensor publishes for one sample."""
    document: dict[str, Any] = {"dev": sample.device_id, "ts": measured_at.astimezone(UTC).isoformat()}
    if sample.temperature_c is not None:
        document["temp"] = sample.temperature_c
    if sample.humidity_pct is not None:
        document["env"] = {"rh": sample.humidity_pct}
    return json_bytes(document)


class ClimateSensorPublisher:
    """Publishes a script of samples to ``topic_template`` (``{device_id}`` is filled in) at QoS 1."""

    def __init__(self, host: str, port: int, *, topic_template: str, qos: int = 1) -> None:
        assert "{device_id}" in topic_template, "topic_template needs a {device_id} placeholder"
        self._host, self._port = host, port
        self._topic_template = topic_template
        self._qos = qos
        self.published_total = 0

    async def run(
        self, samples: Iterable[ClimateSample], *, speedup: float = 1.0, started_at: datetime | None = None
    ) -> int:
        """Publish the samples in offset order; ``started_at`` is the script's time zero (default: now)."""
        origin = started_at or datetime.now(UTC)
        clock = ReplayClock(speedup)
        async with aiomqtt.Client(self._host, self._port, identifier=f"sim-climate-{uuid.uuid4().hex[:12]}") as client:
            for sample in sorted(samples, key=lambda sample: sample.offset_s):
                measured_at = origin + timedelta(seconds=sample.offset_s)
                await clock.wait_until(measured_at)
                topic = self._topic_template.format(device_id=sample.device_id)
                await client.publish(
                    topic, climate_payload(sample, measured_at), qos=self._qos, timeout=PUBLISH_TIMEOUT_S
                )
                self.published_total += 1
        return self.published_total
