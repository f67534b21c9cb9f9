"""Pure codec for JSON climate readings on MQTT: bytes + field mapping → ``SensorReading``s, never raises.

A payload is one JSON object (or an array of them); each configured field becomes one reading, so a
payload with a good temperature and a missing humidity gives one reading and one reject. Numbers must be
JSON numbers: strings, booleans, ``NaN`` and infinities are rejected. The time comes from ``time_field``
(ISO-8601 with an offset, or Unix seconds / milliseconds) or, when the field is not configured or not in
the payload, is the receive time passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from edge.drivers.json_payload import (
    ITEMS_PER_PAYLOAD_MAX,
    PAYLOAD_BYTES_MAX,
    Decoded,
    FieldError,
    get_path,
    load_json_items,
    payload_sha256,
    require_number,
    show,
    timestamp_or,
    unix_timestamp,
)
from edge.drivers.mqtt_sensor.config import DEVICE_ID_CHARS_MAX, MeasurementMapping, MqttSensorConfig
from edge.pipeline.reads import SensorReading

__all__ = ["decode_sensor_payload"]


def decode_sensor_payload(
    payload: bytes,
    config: MqttSensorConfig,
    *,
    received_at: datetime,
    payload_bytes_max: int = PAYLOAD_BYTES_MAX,
    items_max: int = ITEMS_PER_PAYLOAD_MAX,
) -> Decoded[SensorReading]:
    """Decode one payload published on ``config.topic``."""
    loaded = load_json_items(payload, payload_bytes_max=payload_bytes_max, items_max=items_max)
    digest = payload_sha256(payload)
    readings: list[SensorReading] = []
    rejects: list[str] = []
    for index, obj in loaded.elements:
        if isinstance(obj, str):
            rejects.append(f"item {index}: {obj}")
            continue
        try:
            device_id = _device_id(obj, config)
            seen_at = _seen_at(obj, config, received_at)
        except FieldError as exc:
            rejects.append(f"item {index}: {exc}")
            continue
        for mapping in config.fields:
            try:
                value = _scaled(require_number(get_path(obj, mapping.path), mapping.path), mapping)
            except FieldError as exc:
                rejects.append(f"item {index}: {exc}")
                continue
            readings.append(
                SensorReading(
                    device_id=device_id,
                    measurement=mapping.measurement,
                    value=value,
                    uom=mapping.uom,
                    seen_at=seen_at,
                    raw_sha256=digest,
                )
            )
    return Decoded(tuple(readings), (*rejects, *loaded.rejects))


def _scaled(raw: float, mapping: MeasurementMapping) -> float:
    # Finite in, finite scale and offset, and still the product can overflow (1e300 * 1e10): not a reading.
    value = raw * mapping.scale + mapping.offset
    if not math.isfinite(value):
        raise FieldError(f"{mapping.path} {show(raw)} * scale {mapping.scale} + offset {mapping.offset} is not finite")
    return value


def _device_id(obj: Mapping[str, object], config: MqttSensorConfig) -> str:
    if config.device_id is not None:
        return config.device_id
    assert config.device_id_field is not None  # the config validator demands one of the two
    value = get_path(obj, config.device_id_field)
    # Integer ids are common on cheap sensors; they are ids, not quantities, so they become text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(f"{config.device_id_field} {show(value)} is not a device id")
    if len(value) > DEVICE_ID_CHARS_MAX:
        raise FieldError(f"{config.device_id_field} has {len(value)} characters, over {DEVICE_ID_CHARS_MAX}")
    return value


def _seen_at(obj: Mapping[str, object], config: MqttSensorConfig, received_at: datetime) -> datetime:
    if config.time_field is None:
        return received_at
    try:
        value = get_path(obj, config.time_field)
    except FieldError:
        return received_at
    if value is None:
        return received_at
    if config.time_format == "iso8601":
        return timestamp_or(value, config.time_field, received_at)
    unit_per_second = 1 if config.time_format == "unix_s" else 1000
    return unix_timestamp(value, config.time_field, unit_per_second=unit_per_second)
