"""The raw reads drivers hand to the pipeline: one small, frozen type per kind of observation.

Drivers decode their wire format into these and nothing more; the pipeline turns them into events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class TagRead:
    """One RFID tag report from a fixed reader (a reader may aggregate several reads into one report)."""

    reader: str  # device name from the config, e.g. "dock4-reader"
    antenna: int  # antenna port, 1-based
    epc_hex: str  # EPC bank, upper-case hex, as read
    seen_at: datetime  # timezone-aware, the reader's own timestamp when it gave one
    peak_rssi_dbm: float | None = None
    read_count: int = 1
    raw_sha256: str = ""  # digest of the payload this read came from (lineage)


@dataclass(frozen=True)
class GpiEvent:
    """A general-purpose input edge on a reader: photo-eyes that bound a portal pass."""

    reader: str
    pin: int
    state: Literal["high", "low"]
    seen_at: datetime


@dataclass(frozen=True)
class SensorReading:
    """One measurement from a climate sensor, with its unit (UN/ECE code) and device identity."""

    device_id: str
    measurement: Literal["Temperature", "RelativeHumidity"]  # EPCIS sensorReport type
    value: float
    uom: Literal["CEL", "P1"]  # degrees Celsius, percent
    seen_at: datetime
    raw_sha256: str = ""
