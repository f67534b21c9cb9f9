"""The MQTT climate sensor codec and config: field mapping, rejects that say what and where, and any bytes
giving readings or rejects, never an exception."""

from __future__ import annotations

import json
import math
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.drivers.mqtt_sensor import MqttSensorConfig, decode_sensor_payload
from edge.pipeline.reads import SensorReading

RECEIVED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SAMPLE_TOML = Path(__file__).parents[3] / "edge" / "drivers" / "mqtt_sensor" / "sample.toml"
BASE: dict[str, Any] = {
    "name": "cold-room",
    "broker_host": "127.0.0.1",
    "client_id": "gw1-climate",
    "topic": "sensors/+/climate",
    "read_point": "cold-room",
    "device_id_field": "dev",
    "time_field": "ts",
    "fields": [
        {"path": "temp", "measurement": "Temperature", "uom": "CEL"},
        {"path": "env.rh", "measurement": "RelativeHumidity", "uom": "P1"},
    ],
}
CONFIG = MqttSensorConfig(**BASE)


def decode(document: object, config: MqttSensorConfig = CONFIG) -> tuple[list[SensorReading], list[str]]:
    decoded = decode_sensor_payload(json.dumps(document).encode(), config, received_at=RECEIVED_AT)
    return list(decoded.items), list(decoded.rejects)


def test_both_fields_become_readings_with_their_units_device_and_time() -> None:
    readings, rejects = decode(
        {"dev": "coldroom-1", "temp": 4.25, "env": {"rh": 71}, "ts": "2025-01-02T03:00:00+01:00"}
    )
    assert rejects == []
    seen_at = datetime(2025, 1, 2, 3, tzinfo=timezone(timedelta(hours=1)))
    assert [(r.device_id, r.measurement, r.value, r.uom, r.seen_at) for r in readings] == [
        ("coldroom-1", "Temperature", 4.25, "CEL", seen_at),
        ("coldroom-1", "RelativeHumidity", 71.0, "P1", seen_at),
    ]
    assert readings[0].raw_sha256 and readings[0].raw_sha256 == readings[1].raw_sha256


def test_one_bad_field_rejects_that_field_only() -> None:
    readings, rejects = decode([{"dev": "a", "temp": "warm", "env": {"rh": 50}}, {"dev": "b", "temp": 3.0}])
    assert [(r.device_id, r.measurement) for r in readings] == [("a", "RelativeHumidity"), ("b", "Temperature")]
    assert rejects == ["item 0: temp 'warm' is not a number", "item 1: no env"]


def test_nan_infinity_and_booleans_are_rejected() -> None:
    payload = b'{"dev": "a", "temp": NaN, "env": {"rh": true}}'
    decoded = decode_sensor_payload(payload, CONFIG, received_at=RECEIVED_AT)
    assert decoded.items == ()
    assert decoded.rejects == ("item 0: temp nan is not a finite number", "item 0: env.rh true is not a number")


def test_missing_device_id_rejects_the_whole_object_and_integer_ids_become_text() -> None:
    _, rejects = decode({"temp": 1.0, "env": {"rh": 1.0}})
    assert rejects == ["item 0: no dev"]
    readings, _ = decode({"dev": 1234, "temp": 1.0, "env": {"rh": 1.0}})
    assert {r.device_id for r in readings} == {"1234"}


def test_fixed_device_id_scale_offset_and_unix_milliseconds() -> None:
    config = MqttSensorConfig(
        **{
            **BASE,
            "device_id_field": None,
            "device_id": "dock-probe",
            "time_format": "unix_ms",
            "fields": [{"path": "t_f", "measurement": "Temperature", "uom": "CEL", "scale": 5 / 9, "offset": -160 / 9}],
        }
    )
    [reading], rejects = decode({"t_f": 212, "ts": 1_700_000_000_000}, config)
    assert rejects == []
    assert reading.device_id == "dock-probe"
    assert math.isclose(reading.value, 100.0)
    assert reading.seen_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_time_is_the_receive_time_when_absent_and_a_reject_when_malformed() -> None:
    [reading, _], _ = decode({"dev": "a", "temp": 1.0, "env": {"rh": 2.0}})
    assert reading.seen_at == RECEIVED_AT
    _, rejects = decode({"dev": "a", "temp": 1.0, "env": {"rh": 2.0}, "ts": "yesterday"})
    assert rejects == ["item 0: ts 'yesterday' is not an ISO-8601 timestamp"]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"device_id": "x"}, "exactly one of device_id_field and device_id"),
        ({"device_id_field": None}, "exactly one of device_id_field and device_id"),
        ({"fields": [{"path": "t", "measurement": "Temperature", "uom": "P1"}]}, "Temperature is reported in 'CEL'"),
        ({"fields": []}, "at least 1 item"),
        ({"topic": "sensors/#/climate"}, "topic filter"),
        ({"qos": 2}, "qos"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
        ({"message_queue_max": 10, "inflight_messages_max": 20}, "message_queue_max (10) must be >="),
    ],
)
def test_config_refuses(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        MqttSensorConfig(**(BASE | change))


def test_sample_toml_is_a_valid_config() -> None:
    [table] = tomllib.loads(SAMPLE_TOML.read_text())["mqtt_sensor"]
    config = MqttSensorConfig(**table)
    assert config.qos == 1 and config.protocol == "5"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["dev", "temp", "env", "rh", "ts"]) | st.text(max_size=5), children, max_size=5
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda value: json.dumps(value).encode()))
def test_any_payload_gives_readings_or_rejects(payload: bytes) -> None:
    for config in (CONFIG, MqttSensorConfig(**{**BASE, "time_format": "unix_s"})):
        decoded = decode_sensor_payload(payload, config, received_at=RECEIVED_AT)
        assert all(math.isfinite(reading.value) and reading.seen_at.tzinfo is not None for reading in decoded.items)
        assert all(isinstance(reason, str) and reason for reason in decoded.rejects)
