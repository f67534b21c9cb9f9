"""Zebra fixed RFID reader driver (IoT Connector over MQTT): tag data and GPI events become reads.

Config table ``[[zebra_reader]]`` (see ``sample.toml``); ``ZebraReaderDriver.messages()`` yields one
``DriverMessage`` per MQTT message with its ``TagRead`` / ``GpiEvent`` items and rejects, and
``acknowledge(message.token)`` sends the PUBACK after the commit. ``decode_zebra_payload`` is the pure codec.
"""

from edge.drivers.mqtt_subscription import AckToken, DriverMessage
from edge.drivers.zebra_reader.config import ZebraReaderConfig
from edge.drivers.zebra_reader.driver import ZebraReaderDriver
from edge.drivers.zebra_reader.payload import ZebraItem, decode_zebra_payload

__all__ = ["AckToken", "DriverMessage", "ZebraItem", "ZebraReaderConfig", "ZebraReaderDriver", "decode_zebra_payload"]
