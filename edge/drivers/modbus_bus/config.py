"""Configuration of one Modbus bus: the ``[[modbus_bus]]`` table of the gateway config.

A bus is one RS-485 line (Modbus RTU on a serial port, or on a serial device server through a pyserial URL
such as ``socket://10.0.0.7:4001``) or one Modbus TCP endpoint, with the sensors on it. Every option, its
unit and its default is documented in ``sample.toml`` next to this module. Problems are reported per key so
that the gateway config loader can print ``file: modbus_bus[0].devices[1].device_id: ...``.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

__all__ = [
    "PROFILE_NAME_PATTERN",
    "ModbusBusConfig",
    "ModbusDeviceConfig",
    "character_time_ms",
    "silent_interval_ms",
]

# A profile name is a file name in firmware_config/modbus_profiles/ without ".toml": no path separators, so a
# config can never point the loader outside that folder.
PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
DEVICE_NAME_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
# Modbus over Serial Line V1.0 §2.5.1.1: above 19200 baud the silent interval is fixed at 1.75 ms.
SILENT_INTERVAL_MS_FIXED = 1.75
SILENT_INTERVAL_FIXED_ABOVE_BAUD = 19200
# Function codes 3 and 4 address up to 247 devices (248..255 are reserved, 0 is broadcast, which a read
# cannot use).
DEVICE_ID_MIN = 1
DEVICE_ID_MAX = 247

_SERIAL_KEYS = ("port", "baudrate", "bytesize", "parity", "stopbits", "handle_local_echo")
_TCP_KEYS = ("host", "port_number")


def character_time_ms(baudrate: int, parity: str, stopbits: int, bytesize: int = 8) -> float:
    """Time on the wire of one character: start bit, data bits, parity bit, stop bits."""
    bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
    return 1000.0 * bits / baudrate


def silent_interval_ms(baudrate: int, parity: str, stopbits: int, bytesize: int = 8) -> float:
    """t3.5: the silence that ends an RTU frame; the next request must not start before it has passed."""
    if baudrate > SILENT_INTERVAL_FIXED_ABOVE_BAUD:
        return SILENT_INTERVAL_MS_FIXED
    return 3.5 * character_time_ms(baudrate, parity, stopbits, bytesize)


class ModbusDeviceConfig(BaseModel):
    """One sensor on the bus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=DEVICE_NAME_PATTERN, description="Device id in events and logs, e.g. 'coldroom-1-th'.")
    device_id: int = Field(ge=DEVICE_ID_MIN, le=DEVICE_ID_MAX, description="Modbus address (slave id) on the bus.")
    profile: str = Field(
        pattern=PROFILE_NAME_PATTERN,
        description="Register map: firmware_config/modbus_profiles/<profile>.toml, e.g. 'xy-md02'.",
    )
    poll_interval_ms: int = Field(default=5000, ge=100, le=86_400_000)
    read_point: str = Field(min_length=1, description="Name of a [[read_point]] of the gateway config.")


class ModbusBusConfig(BaseModel):
    """One Modbus bus: an RS-485 line (RTU) or a Modbus TCP endpoint, polled by one task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=DEVICE_NAME_PATTERN, description="Bus name in logs, e.g. 'coldroom-rs485'.")
    transport: Literal["rtu", "tcp"]

    # RTU. `port` and `host` are validated even when absent, so that a missing one is reported at its own key.
    port: str | None = Field(
        default=None,
        validate_default=True,
        description="Serial device (prefer /dev/serial/by-id/...) or a pyserial URL such as socket://host:port.",
    )
    # 9600, not pymodbus's 19200 default: the common sensors (XY-MD02, KinCony SHT30) ship at 9600 8N1, and a
    # baud mismatch shows up only as every device timing out.
    baudrate: int = Field(default=9600, ge=300, le=1_000_000)
    # RTU frames are 8-bit binary; 7 data bits exist only in Modbus ASCII, which we do not speak.
    bytesize: Literal[8] = 8
    parity: Literal["N", "E", "O"] = "N"
    # The Modbus spec asks for 2 stop bits without parity (11 bits per character); most cheap sensors use 8N1.
    stopbits: Literal[1, 2] = 1
    handle_local_echo: bool = Field(default=False, description="Two-wire adapters that echo what they send.")

    # TCP
    host: str | None = Field(default=None, validate_default=True)
    port_number: int = Field(default=502, ge=1, le=65535)

    request_timeout_ms: int = Field(default=500, ge=10, le=10_000)
    retries_max: int = Field(default=2, ge=0, le=5)
    inter_request_gap_ms: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        validate_default=True,
        description="Silence between the end of one exchange and the next request; default: t3.5 rounded up.",
    )
    reconnect_delay_ms_initial: int = Field(default=500, ge=10, le=60_000)
    reconnect_delay_ms_max: int = Field(default=30_000, ge=10, le=600_000)
    offline_poll_delay_ms_max: int = Field(
        default=60_000,
        ge=100,
        le=3_600_000,
        description="A device that stopped answering is polled less often, backing off up to this much extra delay.",
    )
    fault_summary_interval_ms: int = Field(
        default=3_600_000,
        ge=1000,
        le=86_400_000,
        description="While a fault repeats poll after poll, a quarantine row counts its repeats this often.",
    )
    devices: list[ModbusDeviceConfig] = Field(min_length=1, max_length=DEVICE_ID_MAX)

    @field_validator("port")
    @classmethod
    def _check_port(cls, port: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("transport") == "rtu" and not port:
            raise ValueError(
                "transport = 'rtu' needs a serial port, e.g. '/dev/serial/by-id/usb-FTDI_...' or 'socket://host:port'"
            )
        return port

    @field_validator("host")
    @classmethod
    def _check_host(cls, host: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("transport") == "tcp" and not host:
            raise ValueError("transport = 'tcp' needs the host name or address of the Modbus TCP device or gateway")
        return host

    @field_validator("inter_request_gap_ms")
    @classmethod
    def _check_gap(cls, gap_ms: int | None, info: ValidationInfo) -> int | None:
        if gap_ms is None or info.data.get("transport") != "rtu":
            return gap_ms
        baudrate, parity, stopbits = (info.data.get(key) for key in ("baudrate", "parity", "stopbits"))
        if not (isinstance(baudrate, int) and isinstance(parity, str) and isinstance(stopbits, int)):
            return gap_ms  # an error is already reported at that key
        t35_ms = silent_interval_ms(baudrate, parity, stopbits)
        if gap_ms < t35_ms:
            raise ValueError(
                f"must be at least t3.5 = {t35_ms:.2f} ms at {baudrate} baud 8{parity}{stopbits} "
                f"(3.5 character times), or a device may read two requests as one frame; got {gap_ms}"
            )
        return gap_ms

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        # A key of the other transport is refused when it says something (a value other than its default),
        # so that `baudrate = 19200` on a TCP bus is not silently ignored but a dumped config loads again.
        wrong = _SERIAL_KEYS if self.transport == "tcp" else _TCP_KEYS
        fields = type(self).model_fields
        given = [key for key in wrong if key in self.model_fields_set and getattr(self, key) != fields[key].default]
        if given:
            raise ValueError(f"{', '.join(given)}: not used with transport = {self.transport!r}; remove them")
        if self.reconnect_delay_ms_max < self.reconnect_delay_ms_initial:
            raise ValueError(
                f"reconnect_delay_ms_max ({self.reconnect_delay_ms_max}) must be >= "
                f"reconnect_delay_ms_initial ({self.reconnect_delay_ms_initial})"
            )
        _require_unique(self.devices, "name")
        _require_unique(self.devices, "device_id")
        return self

    @property
    def silent_interval_ms(self) -> float:
        """t3.5 at this bus's line settings (0 for Modbus TCP, which frames by length)."""
        if self.transport == "tcp":
            return 0.0
        return silent_interval_ms(self.baudrate, self.parity, self.stopbits, self.bytesize)

    @property
    def inter_request_gap_ms_effective(self) -> int:
        """The configured gap, or t3.5 rounded up to whole milliseconds."""
        if self.inter_request_gap_ms is not None:
            return self.inter_request_gap_ms
        return math.ceil(self.silent_interval_ms)

    @property
    def endpoint(self) -> str:
        """Where the bus is, for logs: the serial port or host:port."""
        return str(self.port) if self.transport == "rtu" else f"{self.host}:{self.port_number}"


def _require_unique(devices: list[ModbusDeviceConfig], key: Literal["name", "device_id"]) -> None:
    first_index: dict[object, int] = {}
    for index, device in enumerate(devices):
        value = getattr(device, key)
        if value in first_index:
            raise ValueError(
                f"devices[{index}].{key}: {value!r} is already used by devices[{first_index[value]}] on this bus"
            )
        first_index[value] = index
