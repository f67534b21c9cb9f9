"""MQTT climate sensor driver: JSON temperature / humidity payloads become ``SensorReading``s.

Config table ``[[mqtt_sensor]]`` (see ``sample.toml``): one topic filter and its JSON field mapping;
``MqttSensorDriver.messages()`` yields one ``DriverMessage`` per MQTT message with its readings and rejects,
and ``acknowledge(message.token)`` sends the PUBACK after the commit. ``decode_sensor_payload`` is the pure codec.
"""

from edge.drivers.mqtt_sensor.config import MeasurementMapping, MqttSensorConfig
from edge.drivers.mqtt_sensor.driver import MqttSensorDriver
from edge.drivers.mqtt_sensor.payload import decode_sensor_payload
from edge.drivers.mqtt_subscription import AckToken, DriverMessage

__all__ = [
    "AckToken",
    "DriverMessage",
    "MeasurementMapping",
    "MqttSensorConfig",
    "MqttSensorDriver",
    "decode_sensor_payload",
]
