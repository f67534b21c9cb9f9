"""A scripted cold-room probe on MQTT: steady at 4 °C, then a door left open warms it past 8 °C."""

from __future__ import annotations

from hw_sim.mqtt_sensors.publisher import ClimateSample


def cold_room_script(device_id: str, duration_s: float, interval_s: float, warm_from_s: float) -> list[ClimateSample]:
    samples = []
    steps = int(duration_s / interval_s) + 1
    for step in range(steps):
        offset = step * interval_s
        warming = max(0.0, offset - warm_from_s)
        temperature = round(4.0 + 0.5 * warming, 2)  # +0.5 °C per second of the open door, sped up for the demo
        samples.append(ClimateSample(device_id, offset, temperature, round(78.0 + 0.2 * warming, 1)))
    return samples
