"""Device profiles: the register map of one sensor model, loaded from ``firmware_config/modbus_profiles/``.

Sensor models put the same measurements in different registers with different encodings (standards.md §7.1),
so the map is data, not code: one TOML file per model, validated here. A profile lists ``[[register]]``
tables (function code, address, type, word order, scale, measurement, unit, valid range); see
``firmware_config/modbus_profiles/generic-example.toml`` for every field.

Registers of one function code that follow each other are read with one request (``RegisterBlock``): on a
9600-baud line each request costs a round trip and a silent interval, so two adjacent registers read apart
would nearly halve the bus's capacity.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.drivers.modbus_bus.config import ModbusBusConfig
from edge.errors import ConfigError

__all__ = [
    "PROFILES_DIR_DEFAULT",
    "REGISTERS_PER_REQUEST_MAX",
    "DeviceProfile",
    "FunctionCode",
    "Measurement",
    "RegisterBlock",
    "RegisterSpec",
    "RegisterType",
    "Uom",
    "coalesce",
    "load_profile",
    "load_profiles_for_bus",
    "parse_profile",
]

# Relative to the agent's working directory, like every relative path of the gateway config.
PROFILES_DIR_DEFAULT = Path("firmware_config/modbus_profiles")
# Modbus Application Protocol V1.1b3 §6.3/6.4: a read of holding or input registers returns at most 125.
REGISTERS_PER_REQUEST_MAX = 125
PROFILE_REGISTERS_MAX = 64

FunctionCode = Literal[3, 4]
RegisterType = Literal["int16", "uint16", "offset10000", "float32"]
Measurement = Literal["Temperature", "RelativeHumidity"]
Uom = Literal["CEL", "P1"]

REGISTER_WIDTH: dict[str, int] = {"int16": 1, "uint16": 1, "offset10000": 1, "float32": 2}
UOM_OF_MEASUREMENT: dict[str, str] = {"Temperature": "CEL", "RelativeHumidity": "P1"}


class RegisterSpec(BaseModel):
    """One measurement in a device's registers: where it is and how to turn the words into a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    function_code: FunctionCode = Field(description="3 = holding registers, 4 = input registers.")
    address: int = Field(ge=0, le=65535, description="Protocol address (0-based, as on the wire).")
    count: int | None = Field(default=None, ge=1, le=2, description="Registers taken; implied by `type`.")
    type: RegisterType
    word_order: Literal["big", "little"] | None = Field(
        default=None, description="float32 only: 'big' = high word at the lower address."
    )
    scale: float = Field(default=1.0, description="The decoded number is multiplied by this.")
    measurement: Measurement
    uom: Uom
    valid_min: float | None = None
    valid_max: float | None = None

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        width = REGISTER_WIDTH[self.type]
        if self.count is not None and self.count != width:
            raise ValueError(f"count: type {self.type!r} takes {width} register(s), got {self.count}")
        if self.word_order is not None and self.type != "float32":
            raise ValueError(f"word_order: applies to float32 only, not to type {self.type!r}")
        if self.address + width > 65536:
            raise ValueError(f"address: {self.address} + {width} register(s) runs past 65535")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"scale: must be a finite, non-zero number, got {self.scale}")
        expected_uom = UOM_OF_MEASUREMENT[self.measurement]
        if self.uom != expected_uom:
            raise ValueError(f"uom: {self.measurement} is reported in {expected_uom!r}, got {self.uom!r}")
        for key, bound in (("valid_min", self.valid_min), ("valid_max", self.valid_max)):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{key}: must be a finite number, got {bound}")
        if self.valid_min is not None and self.valid_max is not None and self.valid_min >= self.valid_max:
            raise ValueError(f"valid_min ({self.valid_min}) must be below valid_max ({self.valid_max})")
        return self

    @property
    def width(self) -> int:
        """Registers this value occupies."""
        return REGISTER_WIDTH[self.type]

    @property
    def word_order_effective(self) -> Literal["big", "little"]:
        return self.word_order or "big"


class _ProfileFile(BaseModel):
    """What a profile TOML file holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    # `register` is the TOML table name ([[register]]); as a field name it would shadow BaseModel.register.
    registers: list[RegisterSpec] = Field(alias="register", min_length=1, max_length=PROFILE_REGISTERS_MAX)

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        measured: dict[str, int] = {}
        for index, spec in enumerate(self.registers):
            if spec.measurement in measured:
                raise ValueError(
                    f"register[{index}].measurement: {spec.measurement} is already read by "
                    f"register[{measured[spec.measurement]}]; a profile reports each measurement once"
                )
            measured[spec.measurement] = index
        by_start = sorted(enumerate(self.registers), key=lambda item: (item[1].function_code, item[1].address))
        for (index_a, a), (index_b, b) in itertools.pairwise(by_start):
            if a.function_code == b.function_code and b.address < a.address + a.width:
                raise ValueError(
                    f"register[{index_b}].address: {b.address} overlaps register[{index_a}] "
                    f"(function code {a.function_code}, addresses {a.address}..{a.address + a.width - 1})"
                )
        return self


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """Registers read with one request."""

    function_code: FunctionCode
    address: int
    count: int

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A validated profile: its registers and the requests that read them."""

    name: str
    source: str
    """The file it was loaded from, for messages."""
    description: str
    registers: tuple[RegisterSpec, ...]
    blocks: tuple[RegisterBlock, ...]


def coalesce(registers: Iterable[RegisterSpec]) -> tuple[RegisterBlock, ...]:
    """Merge registers of one function code that are contiguous into blocks of at most 125 registers.

    Only contiguous ones: reading across an unmapped address makes many devices answer with an exception
    (illegal data address) instead of data, so a gap always starts a new request.
    """
    blocks: list[RegisterBlock] = []
    for spec in sorted(registers, key=lambda spec: (spec.function_code, spec.address)):
        last = blocks[-1] if blocks else None
        if (
            last is not None
            and last.function_code == spec.function_code
            and last.end == spec.address
            and last.count + spec.width <= REGISTERS_PER_REQUEST_MAX
        ):
            blocks[-1] = RegisterBlock(last.function_code, last.address, last.count + spec.width)
        else:
            blocks.append(RegisterBlock(spec.function_code, spec.address, spec.width))
    return tuple(blocks)


def parse_profile(text: str, name: str, source: str) -> DeviceProfile:
    """Validate a profile's TOML text; ConfigError names the source file and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        parsed = _ProfileFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from exc
    return DeviceProfile(
        name=name,
        source=source,
        description=parsed.description,
        registers=tuple(parsed.registers),
        blocks=coalesce(parsed.registers),
    )


def load_profile(path: Path) -> DeviceProfile:
    """Read and validate one profile file; its name is the file name without ``.toml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the profile: {exc}") from exc
    return parse_profile(text, path.stem, str(path))


def load_profiles_for_bus(
    bus: ModbusBusConfig, directory: Path = PROFILES_DIR_DEFAULT, *, source: str = "modbus_bus"
) -> dict[str, DeviceProfile]:
    """Load every profile the bus's devices name, each once; ``source`` prefixes errors about the config key.

    A missing profile is reported at the device's ``profile`` key, with the profiles that do exist.
    """
    profiles: dict[str, DeviceProfile] = {}
    for index, device in enumerate(bus.devices):
        if device.profile in profiles:
            continue
        path = directory / f"{device.profile}.toml"
        if not path.is_file():
            available = sorted(candidate.stem for candidate in directory.glob("*.toml"))
            raise ConfigError(
                f"{source}.devices[{index}].profile: no profile file {path} "
                f"(available in {directory}: {', '.join(available) or 'none'}), got {device.profile!r}"
            )
        profiles[device.profile] = load_profile(path)
    return profiles


def _format_validation_error(source: str, error: ValidationError) -> str:
    """One line per problem, ``file: key: what was expected``, like the gateway config loader.

    Kept here rather than imported from ``edge.config``: that module imports the drivers' config models,
    so importing it back from a driver would make an import cycle.
    """
    lines = []
    for problem in error.errors():
        key = _location(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        elif problem["type"] not in ("missing", "value_error"):
            message += f", got {problem['input']!r}"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
