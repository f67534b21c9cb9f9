"""Fuzz the MQTT climate sensor codec with random field mappings and mutated JSON payloads.

Property: ``decode_sensor_payload`` returns (never raises); every configured field of every element becomes a
reading or a reject with a reason (``SensorIntake.from_mqtt`` quarantines a message with rejects); every reading
is a finite number with an aware, representable time, and becomes a sensor event that serializes.
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import UTC, datetime
from typing import Any

from fuzz_mutations import HUGE_NUMBERS, mutated_bytes, mutated_tree, to_json
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from edge.config import ReadPointConfig
from edge.drivers.mqtt_sensor.config import MqttSensorConfig
from edge.drivers.mqtt_sensor.payload import decode_sensor_payload
from edge.pipeline.sensor_events import reading_to_event

fuzz = settings(settings.get_profile("tallyport-fuzz"))
RECEIVED_AT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
READ_POINT = ReadPointConfig(
    name="cold-room", id="urn:rp:cold", biz_location="urn:loc:cold", biz_step="sensor_reporting"
)
# Zones at both ends of the offset range: a time near a limit must not overflow converting to local time.
ZONES = [zoneinfo.ZoneInfo(name) for name in ("UTC", "Pacific/Kiritimati", "Pacific/Niue", "Europe/Amsterdam")]
SAMPLES: list[Any] = [
    {"dev": "probe-1", "ts": "2026-11-29T09:59:58.5+01:00", "temp": 4.25, "env": {"rh": 61.5}},
    {"dev": 17, "ts": 1_764_410_000, "temp": -18, "env": {"rh": 40}},
    {"dev": "probe-2", "ts": 1_764_410_000_123, "temp": 1e3, "env": {"rh": 0}},
]
scales = st.sampled_from([1.0, 0.1, 0.01, -1.0, 1e300, -1e300, 1e-300]) | st.floats(
    allow_nan=False, allow_infinity=False
)
offsets = st.sampled_from([0.0, -273.15, 1e308, -1e308]) | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def sensor_configs(draw: st.DrawFn) -> MqttSensorConfig:
    fields = [
        {"path": "temp", "measurement": "Temperature", "uom": "CEL", "scale": draw(scales), "offset": draw(offsets)},
        {"path": "env.rh", "measurement": "RelativeHumidity", "uom": "P1", "scale": draw(scales)},
    ]
    fields = [field for field in fields if field["scale"] != 0] or fields[:1]
    fields[0]["scale"] = fields[0]["scale"] or 1.0
    identity = draw(st.sampled_from([{"device_id_field": "dev"}, {"device_id": "fixed-probe"}]))
    time = draw(st.sampled_from([{}, {"time_field": "ts"}]))
    return MqttSensorConfig.model_validate(
        {
            "name": "probes",
            "broker_host": "127.0.0.1",
            "client_id": "fuzz",
            "topic": "site/+/climate",
            "read_point": "cold-room",
            "fields": fields,
            **identity,
            **time,
            "time_format": draw(st.sampled_from(["iso8601", "unix_s", "unix_ms"])),
        }
    )


leaves = st.sampled_from(HUGE_NUMBERS) | st.sampled_from(
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1969-12-31T23:59:59Z", 253402300799, -62135596800]
)
documents = st.sampled_from(SAMPLES).flatmap(lambda sample: mutated_tree(sample, leaves | st.text(max_size=5)))
payloads = (documents | st.lists(documents, max_size=4)).map(to_json).flatmap(mutated_bytes) | st.sampled_from(
    [b"", b"[]", b"[" * 50_000, b'{"temp": NaN}', b'{"temp": Infinity}', b"\xff"]
)


@fuzz
@given(config=sensor_configs(), payload=payloads, zone=st.sampled_from(ZONES))
@example(  # regression: a finite reading times a finite scale overflowed to an infinite temperature
    config=MqttSensorConfig.model_validate(
        {
            "name": "p",
            "broker_host": "h",
            "client_id": "c",
            "topic": "t",
            "read_point": "cold-room",
            "device_id": "d",
            "fields": [{"path": "temp", "measurement": "Temperature", "uom": "CEL", "scale": 1e300}],
        }
    ),
    payload=b'{"temp": 1e300}',
    zone=ZONES[0],
)
@example(  # regression: a time at the end of year 9999 overflowed converting to the site's zone
    config=MqttSensorConfig.model_validate(
        {
            "name": "p",
            "broker_host": "h",
            "client_id": "c",
            "topic": "t",
            "read_point": "cold-room",
            "device_id": "d",
            "time_field": "ts",
            "time_format": "unix_s",
            "fields": [{"path": "temp", "measurement": "Temperature", "uom": "CEL"}],
        }
    ),
    payload=b'{"temp": 1, "ts": 253402300799}',
    zone=ZONES[1],
)
def test_fuzz_sensor_payload_becomes_readings_or_rejects(
    config: MqttSensorConfig, payload: bytes, zone: zoneinfo.ZoneInfo
) -> None:
    decoded = decode_sensor_payload(payload, config, received_at=RECEIVED_AT, payload_bytes_max=8192)
    assert all(isinstance(reject, str) and reject.strip() for reject in decoded.rejects)
    assert decoded.items or decoded.rejects, f"payload {payload[:80]!r} vanished"
    event("has readings" if decoded.items else "rejects only")
    for reading in decoded.items:
        assert math.isfinite(reading.value)
        assert reading.seen_at.utcoffset() is not None
        sensor_event = reading_to_event(
            reading, gateway_id="gw", driver="mqtt_sensor", read_point=READ_POINT, zone=zone
        )
        assert sensor_event.sensor_reports[0].value == reading.value
        assert sensor_event.SerializeToString()
