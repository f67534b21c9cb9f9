"""Simulated fixed RFID readers speaking the real wire protocols: Zebra IoT Connector and Impinj R700 over MQTT,
and the Impinj HTTP NDJSON event stream with its CR-LF keep-alives."""

from hw_sim.rfid_readers.formats import (
    GpiEventLike,
    ReaderItem,
    TagReadLike,
    impinj_event,
    impinj_timestamp,
    zebra_event,
    zebra_timestamp,
)
from hw_sim.rfid_readers.impinj_stream import STREAM_PATH, ImpinjStreamServer
from hw_sim.rfid_readers.mqtt_publishers import ImpinjMqttPublisher, ZebraMqttPublisher
from hw_sim.rfid_readers.timing import ReplayClock

__all__ = [
    "STREAM_PATH",
    "GpiEventLike",
    "ImpinjMqttPublisher",
    "ImpinjStreamServer",
    "ReaderItem",
    "ReplayClock",
    "TagReadLike",
    "ZebraMqttPublisher",
    "impinj_event",
    "impinj_timestamp",
    "zebra_event",
    "zebra_timestamp",
]
