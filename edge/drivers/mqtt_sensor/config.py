"""Configuration of MQTT climate sensors: the ``[[mqtt_sensor]]`` table of the gateway config.

One table is one topic filter (``+``/``#`` wildcards allowed, so one table can cover a fleet of identical
sensors) read over one MQTT client connection, with the JSON field mapping for that topic: where the device
id, the time and each measurement sit. Every option, its unit and its default is documented in
``sample.toml`` next to this module.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.drivers.mqtt_subscription import MqttConnectionConfig, validate_topic_filter

__all__ = ["MeasurementMapping", "MqttSensorConfig"]

# The measurement names are EPCIS sensorReport types; each has one unit here (UN/ECE rec. 20 codes).
UNIT_OF_MEASUREMENT = {"Temperature": "CEL", "RelativeHumidity": "P1"}
FIELD_PATH_CHARS_MAX = 200
DEVICE_ID_CHARS_MAX = 128


class MeasurementMapping(BaseModel):
    """One number in the payload and what it measures: ``value = raw * scale + offset``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=FIELD_PATH_CHARS_MAX, description="Dotted path, e.g. 'env.rh'.")
    measurement: Literal["Temperature", "RelativeHumidity"]
    uom: Literal["CEL", "P1"]
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_unit(self) -> Self:
        expected = UNIT_OF_MEASUREMENT[self.measurement]
        if self.uom != expected:
            raise ValueError(f"{self.measurement} is reported in {expected!r}, not {self.uom!r}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class MqttSensorConfig(MqttConnectionConfig):
    """Climate sensors publishing JSON on one topic filter of an MQTT broker."""

    name: str = Field(min_length=1, description="Driver instance name, e.g. 'cold-room-sensors'.")
    broker_host: str = Field(min_length=1)
    client_id: str = Field(min_length=1, max_length=128)
    topic: str = Field(min_length=1)
    read_point: str = Field(min_length=1, description="The [[read_point]] where these sensors hang.")
    device_id_field: str | None = Field(default=None, min_length=1, max_length=FIELD_PATH_CHARS_MAX)
    device_id: str | None = Field(default=None, min_length=1, max_length=DEVICE_ID_CHARS_MAX)
    fields: tuple[MeasurementMapping, ...] = Field(min_length=1)
    time_field: str | None = Field(default=None, min_length=1, max_length=FIELD_PATH_CHARS_MAX)
    time_format: Literal["iso8601", "unix_s", "unix_ms"] = "iso8601"

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, topic: str) -> str:
        return validate_topic_filter(topic)

    @model_validator(mode="after")
    def _check_device_identity(self) -> Self:
        if (self.device_id_field is None) == (self.device_id is None):
            raise ValueError("set exactly one of device_id_field and device_id")
        return self
