"""Register maps of the simulated sensor models: physical values → the registers a real device would hold.

The inverse of the driver's profiles (``firmware_config/modbus_profiles/``), written independently so that a
mistake in one does not cancel out in the other:

* ``xy-md02`` (SHT20): input registers 0x0001 temperature ×10 as int16, 0x0002 humidity ×10; holding
  registers 0x0101 address, 0x0102 baud code (0 = 9600), 0x0103/0x0104 corrections (0);
* ``kincony-sht30``: input registers 0x0000 temperature ×10 in the offset-10000 encoding, 0x0001 humidity ×10,
  0x0002–0x0003 temperature float32 and 0x0004–0x0005 humidity float32 (high word first); the holding
  registers mirror them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

__all__ = ["MODELS", "RegisterWrite", "SensorModel", "holding_registers", "input_registers", "register_writes"]

SensorModel = Literal["xy-md02", "kincony-sht30"]
MODELS: tuple[SensorModel, ...] = ("xy-md02", "kincony-sht30")

XY_MD02_INPUT_START = 0x0001
XY_MD02_HOLDING_START = 0x0101
KINCONY_START = 0x0000


@dataclass(frozen=True, slots=True)
class RegisterWrite:
    """Registers to set on the server: function code 3 (holding) or 4 (input), first address, values."""

    function_code: Literal[3, 4]
    address: int
    values: tuple[int, ...]


def _int16(value: int) -> int:
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError(f"{value} does not fit an int16 register")
    return value & 0xFFFF


def _uint16(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{value} does not fit a uint16 register")
    return value


def _offset10000(tenths: int) -> int:
    return _uint16(tenths if tenths >= 0 else 10000 - tenths)


def _float32(value: float) -> tuple[int, int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return high, low


def input_registers(model: SensorModel, temperature_cel: float, humidity_percent: float) -> tuple[int, tuple[int, ...]]:
    """First address and values of the input registers (FC 04) for these readings."""
    temperature_tenths = round(temperature_cel * 10)
    humidity_tenths = round(humidity_percent * 10)
    if model == "xy-md02":
        return XY_MD02_INPUT_START, (_int16(temperature_tenths), _uint16(humidity_tenths))
    return KINCONY_START, (
        _offset10000(temperature_tenths),
        _uint16(humidity_tenths),
        *_float32(temperature_cel),
        *_float32(humidity_percent),
    )


def holding_registers(
    model: SensorModel, device_id: int, temperature_cel: float, humidity_percent: float
) -> tuple[int, tuple[int, ...]]:
    """First address and values of the holding registers (FC 03)."""
    if model == "xy-md02":
        # Address, baud code (0 = 9600), temperature and humidity correction.
        return XY_MD02_HOLDING_START, (device_id, 0, 0, 0)
    return input_registers(model, temperature_cel, humidity_percent)


def register_writes(model: SensorModel, temperature_cel: float, humidity_percent: float) -> list[RegisterWrite]:
    """What changes on the device when its readings change."""
    start, values = input_registers(model, temperature_cel, humidity_percent)
    writes = [RegisterWrite(4, start, values)]
    if model == "kincony-sht30":
        writes.append(RegisterWrite(3, start, values))
    return writes
