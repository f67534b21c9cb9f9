"""Registers → measurements, per device profile. Pure: no I/O, no clock, and it never raises on device data.

Each register of the profile that lies inside the block that was read becomes a ``DecodedValue``
(measurement, value, unit) or a ``ValueFault`` that says why the number cannot be a reading:

* ``int16``: two's complement (XY-MD02 temperature: 0xFF33 → −205 → −20.5 °C);
* ``uint16``: as is;
* ``offset10000``: KinCony's sign convention, a raw value ≥ 10000 means −(value − 10000);
* ``float32``: IEEE 754 over two registers, high word first (``word_order = "big"``) or last.

A float32 is taken as the shortest decimal that has the same bits (the device stored 23.1, not
23.100000381…). The number is multiplied by the profile's ``scale`` and rounded to 6 decimal places, which
removes binary noise (305 × 0.1 = 30.500000000000004) and is far below any climate sensor's resolution.

NaN, ±inf and values outside ``valid_min``/``valid_max`` (bounds included as valid) are faults: a broken or
unplugged sensor element reports a number it cannot have measured, and that must reach the quarantine with
its raw registers, not the cloud as a temperature.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from edge.drivers.modbus_bus.profiles import DeviceProfile, Measurement, RegisterSpec, Uom

__all__ = [
    "DECIMALS",
    "OFFSET10000_NEGATIVE_FROM",
    "DecodedValue",
    "ValueFault",
    "ValueFaultCode",
    "decode_register",
    "decode_registers",
    "registers_to_bytes",
]

DECIMALS = 6
# Nine significant digits always round-trip a float32 (IEEE 754: max_digits10 of binary32).
FLOAT32_DIGITS_MAX = 9
FLOAT32_MAX: float = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
OFFSET10000_NEGATIVE_FROM = 10000
ValueFaultCode = Literal["not_finite", "out_of_range", "short_response"]


class DecodedValue(NamedTuple):
    """A measurement ready to become a ``SensorReading``."""

    measurement: Measurement
    value: float
    uom: Uom


@dataclass(frozen=True, slots=True)
class ValueFault:
    """A register that decoded to something that is not a valid measurement."""

    measurement: Measurement
    address: int
    reason_code: ValueFaultCode
    reason: str


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    """The registers as they travel on the wire: each one big-endian."""
    return b"".join((register & 0xFFFF).to_bytes(2, "big") for register in registers)


def decode_register(spec: RegisterSpec, words: Sequence[int]) -> DecodedValue | ValueFault:
    """Decode one register (or register pair) of ``spec`` from its raw 16-bit words."""
    if len(words) != spec.width:
        return ValueFault(
            spec.measurement,
            spec.address,
            "short_response",
            f"{spec.measurement} at {_where(spec)}: needs {spec.width} register(s), got {len(words)}",
        )
    number = _number(spec, words)
    if not math.isfinite(number):
        return ValueFault(
            spec.measurement,
            spec.address,
            "not_finite",
            f"{spec.measurement} at {_where(spec)} is {number} (raw {_hex(words)}): the sensor reports no value",
        )
    value = round(number * spec.scale, DECIMALS)
    if not math.isfinite(value):
        # A finite number times a finite scale can still overflow (a float32 near 3.4e38 times 1e300).
        return ValueFault(
            spec.measurement,
            spec.address,
            "not_finite",
            f"{spec.measurement} at {_where(spec)} is {number} (raw {_hex(words)}), times scale {spec.scale} "
            "overflows: not a reading",
        )
    too_low = spec.valid_min is not None and value < spec.valid_min
    too_high = spec.valid_max is not None and value > spec.valid_max
    if too_low or too_high:
        bound = f"below valid_min {spec.valid_min}" if too_low else f"above valid_max {spec.valid_max}"
        return ValueFault(
            spec.measurement,
            spec.address,
            "out_of_range",
            f"{spec.measurement} {value} {spec.uom} at {_where(spec)} (raw {_hex(words)}) is {bound}: "
            "sensor fault, not a reading",
        )
    return DecodedValue(spec.measurement, value, spec.uom)


def decode_registers(
    profile: DeviceProfile, function_code: int, start: int, registers: Sequence[int]
) -> list[DecodedValue | ValueFault]:
    """Decode every register of ``profile`` that lies inside the block read at ``start``, in address order.

    A register that the block only partly covers (the device answered with fewer registers than asked) is
    a ``short_response`` fault; registers entirely outside the block are not this block's business.
    """
    end = start + len(registers)
    outcomes: list[DecodedValue | ValueFault] = []
    for spec in sorted(profile.registers, key=lambda spec: spec.address):
        if spec.function_code != function_code or spec.address < start or spec.address >= end:
            continue
        offset = spec.address - start
        outcomes.append(decode_register(spec, registers[offset : offset + spec.width]))
    return outcomes


def _number(spec: RegisterSpec, words: Sequence[int]) -> float:
    first = words[0] & 0xFFFF
    if spec.type == "int16":
        return float(first - 0x10000 if first & 0x8000 else first)
    if spec.type == "uint16":
        return float(first)
    if spec.type == "offset10000":
        return float(-(first - OFFSET10000_NEGATIVE_FROM) if first >= OFFSET10000_NEGATIVE_FROM else first)
    high, low = (words[0], words[1]) if spec.word_order_effective == "big" else (words[1], words[0])
    return _shortest_float32(registers_to_bytes((high, low)))


def _shortest_float32(packed: bytes) -> float:
    """The float32 as the shortest decimal that packs to the same bits: 0x41A26666 is 20.3, not 20.299999.

    A device that stores 20.3 in a float32 meant 20.3; widening to float64 would report 20.299999237060547.
    """
    value: float = struct.unpack(">f", packed)[0]
    if not math.isfinite(value):
        return value
    for digits in range(1, FLOAT32_DIGITS_MAX + 1):
        candidate = float(f"{value:.{digits}g}")
        # Near the float32 limit (0x7F7FFFFF = 3.4028234664e38) rounding can step past it, and a float32
        # cannot hold the candidate: it is not this value's decimal.
        if abs(candidate) <= FLOAT32_MAX and struct.pack(">f", candidate) == packed:
            return candidate
    return value


def _where(spec: RegisterSpec) -> str:
    return f"FC{spec.function_code:02d} register 0x{spec.address:04X}"


def _hex(words: Sequence[int]) -> str:
    return " ".join(f"0x{word & 0xFFFF:04X}" for word in words)
