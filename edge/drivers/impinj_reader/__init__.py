"""Impinj R700/R720 reader driver (IoT Device Interface over MQTT or the HTTP NDJSON event stream).

Config table ``[[impinj_reader]]`` (see ``sample.toml``); ``ImpinjReaderDriver.messages()`` yields one
``DriverMessage`` per MQTT message or stream line with its ``TagRead`` / ``GpiEvent`` items and rejects, and
``acknowledge(message.token)`` sends the PUBACK after the commit (a no-op on the HTTP stream).
``decode_impinj_payload`` is the pure codec, also usable for webhook bodies.
"""

from edge.drivers.impinj_reader.config import ImpinjReaderConfig
from edge.drivers.impinj_reader.driver import ImpinjReaderDriver
from edge.drivers.impinj_reader.http_stream import ImpinjHttpStream, LineSplitter, StreamLine
from edge.drivers.impinj_reader.payload import ImpinjItem, decode_impinj_payload
from edge.drivers.mqtt_subscription import AckToken, DriverMessage

__all__ = [
    "AckToken",
    "DriverMessage",
    "ImpinjHttpStream",
    "ImpinjItem",
    "ImpinjReaderConfig",
    "ImpinjReaderDriver",
    "LineSplitter",
    "StreamLine",
    "decode_impinj_payload",
]
