"""Configuration of one serial barcode scanner: the ``[[scanner]]`` table of the gateway config.

Every option, its unit and its default is documented in ``sample.toml`` next to this module.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.drivers.scanner.decode import DecodeOptions
from edge.drivers.scanner.framing import FramingMode

__all__ = ["ScannerConfig"]

# A frame must end only after a silence clearly longer than the gap between two characters of the same
# scan, or one scan is cut in two at low baud rates.
IDLE_GAP_CHARACTER_TIMES_MIN = 4


class ScannerConfig(BaseModel):
    """One serial (RS-232 or USB-CDC) barcode scanner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Device id, e.g. 'scanner-dock4'.")
    port: str = Field(
        min_length=1,
        description="Serial device path; may be a /dev/serial/by-id/… symlink, re-resolved on each open.",
    )
    read_point: str = Field(min_length=1, description="Name of a read point defined in the gateway config.")
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    framing: FramingMode = "terminator"
    terminators: list[str] = Field(default_factory=lambda: ["\r\n", "\r", "\n"])
    idle_gap_ms: int = Field(default=80, ge=5, le=2000)
    frame_bytes_max: int = Field(default=4096, ge=64, le=65536)
    prefix: str = ""
    suffix: str = ""
    ack_nak: bool = False
    reconnect_delay_ms_initial: int = Field(default=200, ge=10, le=60_000)
    reconnect_delay_ms_max: int = Field(default=10_000, ge=10, le=600_000)

    @field_validator("terminators")
    @classmethod
    def _check_terminators(cls, terminators: list[str]) -> list[str]:
        if any(not terminator for terminator in terminators):
            raise ValueError(f"terminators must be non-empty strings, got {terminators!r}")
        for terminator in terminators:
            _require_latin1(terminator, "terminator")
        return terminators

    @field_validator("prefix", "suffix")
    @classmethod
    def _check_affix(cls, affix: str) -> str:
        _require_latin1(affix, "prefix/suffix")
        return affix

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        if self.framing == "terminator" and not self.terminators:
            raise ValueError("framing = 'terminator' needs at least one terminator")
        if self.reconnect_delay_ms_max < self.reconnect_delay_ms_initial:
            raise ValueError(
                f"reconnect_delay_ms_max ({self.reconnect_delay_ms_max}) must be >= "
                f"reconnect_delay_ms_initial ({self.reconnect_delay_ms_initial})"
            )
        idle_gap_ms_min = math.ceil(IDLE_GAP_CHARACTER_TIMES_MIN * self.character_time_ms)
        if self.idle_gap_ms < idle_gap_ms_min:
            raise ValueError(
                f"idle_gap_ms ({self.idle_gap_ms}) must be >= {idle_gap_ms_min} "
                f"({IDLE_GAP_CHARACTER_TIMES_MIN} character times at {self.baudrate} baud)"
            )
        return self

    @property
    def character_time_ms(self) -> float:
        """Time on the wire of one character: start bit, data bits, parity bit, stop bits."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return 1000.0 * bits / self.baudrate

    @property
    def terminator_bytes(self) -> list[bytes]:
        """The terminators as the bytes that arrive on the wire."""
        return [terminator.encode("latin-1") for terminator in self.terminators]

    def decode_options(self) -> DecodeOptions:
        """What ``decode_scan`` needs from this config."""
        return DecodeOptions(prefix=self.prefix, suffix=self.suffix)


def _require_latin1(value: str, what: str) -> None:
    # Scanners send 8-bit bytes; the driver reads them as latin-1, so anything else could never match.
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} must be latin-1 characters (one byte each)") from None
